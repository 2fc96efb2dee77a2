"""Django settings for the lead-sync product.

Every value that differs between machines comes from the environment (or a `.env`
file beside manage.py) through django-environ. `.env.example` lists them all with the
embedded defaults: SQLite, django-q2's ORM broker and the local Dynamics sandbox.
"""

import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
ENV_FILE = env.str("LEADSYNC_ENV_FILE", default=str(BASE_DIR / ".env"))
if Path(ENV_FILE).is_file():
    env.read_env(ENV_FILE)


def _path(name, default):
    """Return a path setting, relative paths taken from the project folder."""
    value = env.str(name, default="") or str(default)
    return (BASE_DIR / value).resolve() if not Path(value).is_absolute() else Path(value)


def _required(name):
    """Return a required setting, failing at start with a message that names it."""
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"The setting {name} is missing. Set it in the environment or in .env "
            f"(copy .env.example to .env and run `make env` to generate keys)."
        )
    return value


def _capture_rate():
    """Return LEAD_CAPTURE_RATE, trimmed and in lower case, checked at start: DRF would
    only parse it per request, and fail every capture with a server error."""
    value = env.str("LEAD_CAPTURE_RATE", default="120/min")
    rate = value.strip().lower()
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)s?", rate):
        raise ImproperlyConfigured(
            f"LEAD_CAPTURE_RATE must be a number of captures of at least 1, a slash and a "
            f"period (s, min, hour or day), such as 120/min; got {value!r}."
        )
    return rate


SECRET_KEY = _required("SECRET_KEY")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Behind a proxy that terminates TLS: the request header and value that mark a request as
# https, as "HTTP_X_FORWARDED_PROTO,https". Only set it when the proxy always sets or
# strips that header. The session and CSRF cookies are then sent over https only.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER must be a header and a value separated by a comma, "
            f"such as HTTP_X_FORWARDED_PROTO,https; got {','.join(_proxy_ssl_header)!r}."
        )
    SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
# Seconds browsers should use only https for this host (HSTS); 0 sends no header.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)

# Runtime files (SQLite database, sandbox certificate and records) live here.
VAR_DIR = _path("VAR_DIR", BASE_DIR / "var")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_q",
    "teams",
    "leads",
    "integrations",
    "dynamics_sandbox",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'leadsync.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the django-q2 workers write to one SQLite file at once. WAL lets
    # readers run beside a writer, IMMEDIATE takes the write lock at BEGIN so two writers
    # queue up instead of failing, and the timeout (seconds) is how long one waits.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default="") or None}
else:
    # PostgreSQL (the scale-out path): keep connections open between requests for this
    # many seconds, and check them before reuse, so a restarted server costs one error.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

LOGIN_URL = "admin:login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "leads.parsers.SafeJSONParser",
        "leads.parsers.StrictFormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Captures per member, as "<number>/<s, min, hour or day>". Above it, POST /api/leads/
    # returns 429 with Retry-After.
    "DEFAULT_THROTTLE_RATES": {
        "capture": _capture_rate(),
    },
}

# The OpenAPI schema served at /api/schema/ (YAML, or JSON with ?format=json).
SPECTACULAR_SETTINGS = {
    "TITLE": "Lead sync API",
    "DESCRIPTION": (
        "Capture leads and read back their Dynamics 365 sync state. Authenticate with "
        "`Authorization: Token <token>`."
    ),
    "VERSION": "1.0.0",
    # The schema describes the leads API, not the endpoint that serves it.
    "SERVE_INCLUDE_SCHEMA": False,
}

# Redis, for the scale-out path: with REDIS_URL set, django-q2 queues tasks in Redis and
# the cache (which the capture throttle counts in) is shared by every process. Without
# it, tasks queue in the database and each process has its own in-memory cache.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "leadsync",
        }
    }

# django-q2. A task that runs longer than `timeout` seconds is killed. With the ORM broker
# a task that was not acknowledged is handed out again after `retry` seconds, so `retry`
# must stay above `timeout`, or a slow task would run twice at once.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=120)
Q_CLUSTER = {
    "name": "leadsync",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + 60,
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.2,
    "label": "Background tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# A worker claims the leads it syncs for this many seconds. The claim must outlive the
# task timeout, so that only a worker that died leaves a claim to expire.
SYNC_CLAIM_SECONDS = env.int("SYNC_CLAIM_SECONDS", default=Q_TIMEOUT + 60)
if SYNC_CLAIM_SECONDS <= Q_TIMEOUT:
    raise ImproperlyConfigured(
        f"SYNC_CLAIM_SECONDS ({SYNC_CLAIM_SECONDS}) must be greater than Q_TIMEOUT "
        f"({Q_TIMEOUT}), or a slow sync could be claimed by a second worker. Raise it or "
        f"leave it unset."
    )
# The sweep, every SYNC_SWEEP_MINUTES, queues again the leads that have been queued for
# more than SYNC_STALE_SECONDS with no live claim: their task was lost with a killed
# worker, or the queue was emptied.
SYNC_STALE_SECONDS = env.int("SYNC_STALE_SECONDS", default=600)
SYNC_SWEEP_MINUTES = env.int("SYNC_SWEEP_MINUTES", default=5)

# Dynamics 365 connection. The defaults point at the local sandbox started by
# `python manage.py dynamics_sandbox`; see README.md for a real org.
# The sign-in authority of the deployment's app registration, which ends in
# /organizations for a multi-tenant app. Client credentials need one tenant, so an
# application user signs in at this URL with its last segment replaced by its tenant id.
DYNAMICS_AUTHORITY = env.str("DYNAMICS_AUTHORITY", default="https://127.0.0.1:8443/organizations")
# The environment that "Connect to this URL" suggests, and that new integrations start with.
DYNAMICS_ORG_URL = env.str("DYNAMICS_ORG_URL", default="https://127.0.0.1:8443")
# The Global Discovery Service that lists the environments a signed-in admin can reach.
# Other clouds have their own, for example https://globaldisco.crm.microsoftdynamics.us.
DYNAMICS_DISCOVERY_URL = env.str("DYNAMICS_DISCOVERY_URL",
                                 default="https://127.0.0.1:8443/globaldisco")
DYNAMICS_CLIENT_ID = env.str("DYNAMICS_CLIENT_ID", default="00000000-0000-4000-8000-00000000c1d0")
DYNAMICS_CLIENT_SECRET = env.str("DYNAMICS_CLIENT_SECRET", default="sandbox-client-secret")
# Redirect URI registered for the app; empty builds it from the incoming request.
DYNAMICS_REDIRECT_URI = env.str("DYNAMICS_REDIRECT_URI", default="")
# CA bundle that signs the org's and the authority's certificates. Empty means the
# public CAs that `certifi` ships, which is right for a real Microsoft org.
# The default is the certificate that the sandbox writes at its first start.
SANDBOX_DATA_DIR = _path("SANDBOX_DATA_DIR", VAR_DIR / "sandbox")
DYNAMICS_CA_BUNDLE = env.str("DYNAMICS_CA_BUNDLE", default=str(SANDBOX_DATA_DIR / "cert.pem"))
if DYNAMICS_CA_BUNDLE:
    DYNAMICS_CA_BUNDLE = str(_path("DYNAMICS_CA_BUNDLE", DYNAMICS_CA_BUNDLE))
# Seconds to wait for a TCP connection and for a response, on every Dynamics request.
DYNAMICS_CONNECT_TIMEOUT = env.float("DYNAMICS_CONNECT_TIMEOUT", default=5.0)
DYNAMICS_READ_TIMEOUT = env.float("DYNAMICS_READ_TIMEOUT", default=30.0)
# Concurrent requests to one org across all processes. Dataverse rejects a user's
# 53rd concurrent request, so the default stays a few below that.
DYNAMICS_MAX_CONCURRENT_REQUESTS = env.int("DYNAMICS_MAX_CONCURRENT_REQUESTS", default=48)
# Fernet key (urlsafe base64, 32 bytes) that encrypts the stored MSAL token caches.
TOKEN_CACHE_KEY = _required("TOKEN_CACHE_KEY")

# The local Dynamics stand-in (dynamics_sandbox). It keeps its records in its own SQLite
# file under SANDBOX_DATA_DIR, apart from the product's database.
SANDBOX_HOST = env.str("SANDBOX_HOST", default="127.0.0.1")
SANDBOX_PORT = env.int("SANDBOX_PORT", default=8443)

# Hosts besides Microsoft's Dynamics domains (*.dynamics.com, *.microsoftdynamics.us,
# *.dynamics.cn) that may serve an environment. Only a deployment whose sign-in is the
# sandbox trusts the sandbox host by default; a real deployment leaves this empty.
DYNAMICS_EXTRA_ENVIRONMENT_HOSTS = env.list(
    "DYNAMICS_EXTRA_ENVIRONMENT_HOSTS",
    default=[SANDBOX_HOST] if DYNAMICS_AUTHORITY.startswith(f"https://{SANDBOX_HOST}:") else [],
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}
SANDBOX_CLIENT_ID = env.str("SANDBOX_CLIENT_ID", default=DYNAMICS_CLIENT_ID)
SANDBOX_CLIENT_SECRET = env.str("SANDBOX_CLIENT_SECRET", default=DYNAMICS_CLIENT_SECRET)
