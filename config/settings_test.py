"""Settings for the test suite: the main settings without any .env file.

Tests must not depend on a developer's .env (which may point at a real org or database),
so only the process environment is read, with fixed keys as defaults. DATABASE_URL from
the environment still applies, which is how CI runs the suite on PostgreSQL.
"""

import os

os.environ["LEADSYNC_ENV_FILE"] = ""
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
# A valid Fernet key used only by tests; real deployments generate their own.
os.environ.setdefault("TOKEN_CACHE_KEY", "_TBix4Tr6QkBlgyUVBxvCIPzd1iK5NFGfWWCIj3eKSE=")

from .settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
