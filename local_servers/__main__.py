"""Run a command beside private PostgreSQL and Redis servers.

    python3 -m local_servers run -- COMMAND [ARGUMENT ...]

The command gets DATABASE_URL and REDIS_URL in its environment. Both servers stop when
it ends, and its exit status is returned.
"""

import argparse
import os
import subprocess
import sys

from . import PostgresServer, RedisServer, ServerError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m local_servers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser("run", help="run COMMAND with DATABASE_URL and REDIS_URL set")
    run.add_argument("command", nargs=argparse.REMAINDER)
    arguments = parser.parse_args(argv)
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    if not command:
        parser.error("give the command to run after '--', for example: run -- make test")

    servers = []
    try:
        postgres = PostgresServer().start()
        servers.append(postgres)
        redis = RedisServer().start()
        servers.append(redis)
        print(f"PostgreSQL at {postgres.url}, Redis at {redis.url}", flush=True)
        env = dict(os.environ, DATABASE_URL=postgres.url, REDIS_URL=redis.url)
        return subprocess.run(command, env=env).returncode
    except ServerError as error:
        print(f"local_servers: {error}", file=sys.stderr)
        return 1
    finally:
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
