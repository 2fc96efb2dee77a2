"""Write a .env file from .env.example with fresh random keys.

Usage: python -m demo.make_env .env.example .env
An existing target file is left as it is.
"""

import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet


def render(template):
    """Return the template text with SECRET_KEY and TOKEN_CACHE_KEY filled in."""
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "TOKEN_CACHE_KEY": Fernet.generate_key().decode("ascii"),
    }
    lines = []
    for line in template.splitlines():
        name = line.split("=", 1)[0]
        if name in values and line.strip() == f"{name}=":
            line = f"{name}={values[name]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) != 3:
        print("usage: python -m demo.make_env TEMPLATE TARGET", file=sys.stderr)
        return 2
    template, target = Path(argv[1]), Path(argv[2])
    if target.exists():
        print(f"{target} exists; leaving it unchanged.")
        return 0
    target.write_text(render(template.read_text()))
    target.chmod(0o600)
    print(f"Wrote {target} with new SECRET_KEY and TOKEN_CACHE_KEY.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
