"""Beem Admin Suite settings, driven by environment variables.

With nothing set, the project runs embedded: SQLite, Celery in eager mode, a local-memory
cache, DEBUG on. Every variable is documented in README.md ("Configuration").
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.conf import global_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}.")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}.")


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Outside debug Beem refuses to start without a "
            "secret key: set DJANGO_SECRET_KEY to a long random string (for example the output "
            "of `python -c 'import secrets; print(secrets.token_urlsafe(50))'`)."
        )
    SECRET_KEY = "insecure-development-key-only-for-DEBUG"
# Earlier keys, still accepted for what they signed: sessions, and the stored client secrets
# (directory_sync/client_secrets.py), so DJANGO_SECRET_KEY can be rotated without new secrets.
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_ALLOWED_HOSTS is not set. Outside debug Beem refuses to start without it: "
            "set it to the comma-separated host names this server answers for, e.g. "
            "'beem.example.com'."
        )
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# The public base URL that Entra ID reaches (used for Tenant URL and Token Endpoint shown to
# admins). Empty: derived from the incoming request.
BEEM_PUBLIC_URL = os.environ.get("BEEM_PUBLIC_URL", "").rstrip("/")

INSTALLED_APPS = [
    "beem_admin.admin_site.BeemAdminConfig",  # django.contrib.admin, see there
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "oauth2_provider",
    "django_scim",
    "axes",
    "members",
    "directory_sync",
]

MIDDLEWARE = [
    # First: every later log line of the request carries its id (README "Operations").
    "beem_admin.middleware.RequestIdMiddleware",
    # Requests under a prefix of MIDDLEWARE_BY_PATH (the SCIM API, the token endpoint) leave
    # this list here for their own chain; everything below is the admin UI's.
    "beem_admin.middleware.PathRouterMiddleware",
    # Before host checks and the HTTPS redirect, which would hide the state from a load balancer.
    "directory_sync.health.HealthzMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Oversized bodies get 413 before sessions, auth or form parsing do any work.
    "directory_sync.scim.limits.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]
# The Bearer-token SCIM API and the OAuth token endpoint (client credentials): no cookies,
# sessions, logged-in user, messages, CSRF or language choice, so none of that middleware.
MIDDLEWARE_BY_PATH = {
    "/scim/": [
        # First: its time covers the whole chain.
        "directory_sync.metrics.MetricsMiddleware",
        # Every error answer is a SCIM error body (an unknown path's 404, a 500 from any later
        # middleware, DEBUG pages), and statements run under the SCIM timeouts below.
        "directory_sync.scim.middleware.ScimErrorMiddleware",
        "directory_sync.scim.middleware.ScimDatabaseBoundsMiddleware",
        "beem_admin.middleware.DefaultLanguageMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "directory_sync.scim.limits.RequestBodyLimitMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    "/o/": [
        "directory_sync.metrics.MetricsMiddleware",
        "beem_admin.middleware.DefaultLanguageMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "directory_sync.scim.limits.RequestBodyLimitMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
}

ROOT_URLCONF = "beem_admin.urls"
WSGI_APPLICATION = "beem_admin.wsgi.application"

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
                "django.template.context_processors.i18n",
                "members.context_processors.organization",
            ],
            # ``|when``: the one date-time format (beem_admin/template_filters.py).
            "builtins": ["beem_admin.template_filters"],
        },
    },
]

# Database: PostgreSQL (or anything dj-database-url knows) from DATABASE_URL; SQLite otherwise.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite is the embedded default; WAL and a busy timeout keep the dev server and an eager
    # Celery task from tripping over each other's locks.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
    }
# PostgreSQL: Entra's hot SCIM reads are prepared once per connection
# (directory_sync.store.db.prepared_cursor: SQL PREPARE/EXECUTE). Off behind a pooler in
# transaction mode (PgBouncer, any version).
BEEM_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Entra client secrets are stored with a keyed SHA-256 (directory_sync.client_secrets), not a
# password hash; listed after the default so that user passwords keep PBKDF2.
PASSWORD_HASHERS = [
    *global_settings.PASSWORD_HASHERS,
    "directory_sync.client_secrets.ClientSecretHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "members:member_list"
LOGOUT_REDIRECT_URL = "login"

# django-axes: lock an account+IP after repeated failed logins (brute force protection).
AXES_FAILURE_LIMIT = env_int("BEEM_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("BEEM_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_ENABLED = env_bool("BEEM_LOGIN_RATE_LIMIT", True)
# The branded, translated lock-out page (429).
AXES_LOCKOUT_CALLABLE = "beem_admin.views.login_locked_out"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("ar", _("Arabic"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# One date-time format per language (DATETIME_FORMAT), for every page.
FORMAT_MODULE_PATH = ["beem_admin.formats"]
TIME_ZONE = os.environ.get("BEEM_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []

# Request bodies: SCIM documents are small; anything over this limit is refused early (413).
BEEM_MAX_BODY_BYTES = env_int("BEEM_MAX_BODY_BYTES", 1_048_576)
DATA_UPLOAD_MAX_MEMORY_SIZE = BEEM_MAX_BODY_BYTES

# Security outside debug.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# OAuth2 (django-oauth-toolkit): Entra ID uses the client credentials grant.
BEEM_TOKEN_LIFETIME_SECONDS = env_int("BEEM_TOKEN_LIFETIME_SECONDS", 3600)
if not 3600 <= BEEM_TOKEN_LIFETIME_SECONDS <= 21600:
    raise ImproperlyConfigured(
        "BEEM_TOKEN_LIFETIME_SECONDS must be between 3600 and 21600 (Entra ID's accepted range)."
    )
# /o/token/ answers 429 with Retry-After past these many requests per minute naming one Client
# Identifier, or past these many failed client authentications per minute from one source
# address (REMOTE_ADDR). Counted in the Django cache: shared by every process with REDIS_URL,
# per process without. 0: no limit. Entra ID asks for a token about once an hour per job.
BEEM_TOKEN_RATE_LIMIT = env_int("BEEM_TOKEN_RATE_LIMIT", 30)
BEEM_TOKEN_RATE_LIMIT_PER_ADDRESS = env_int("BEEM_TOKEN_RATE_LIMIT_PER_ADDRESS", 30)
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": BEEM_TOKEN_LIFETIME_SECONDS,
    "SCOPES": {"scim": _("Provision users and groups through SCIM")},
    "DEFAULT_SCOPES": ["scim"],
    # Only the client credentials grant is used (Entra ID); PKCE concerns the authorization
    # code grant, so requiring it costs nothing and keeps `check --deploy` clean.
    "PKCE_REQUIRED": True,
    # RFC 9700 (OAuth 2.0 Security BCP): refuse the legacy grants and transports we never use,
    # and store access/refresh tokens as SHA-256 checksums instead of plaintext, so a database
    # leak gives no usable bearer token. Look tokens up through oauthlib (verify_request) or by
    # `token_checksum`, never by the `token` column.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
}

# django-scim2. Our adapters, filter parsers and auth check live in directory_sync.scim.
SCIM_SERVICE_PROVIDER = {
    "NETLOC": os.environ.get("BEEM_SCIM_NETLOC", "localhost"),
    "AUTHENTICATION_SCHEMES": [
        {
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "OAuth2 client credentials grant; send the token as a Bearer token.",
            "primary": True,
        }
    ],
    "WWW_AUTHENTICATE_HEADER": 'Bearer realm="beem-scim"',
    # Token → application → organization → active sync; the stock check wants request.user,
    # which a client credentials token never has (design.md §5).
    "AUTH_CHECK_MIDDLEWARE": "directory_sync.scim.auth_middleware.SCIMAuthCheckMiddleware",
    # Our adapters over DirectoryRecord, discovery documents and Tenant URL locations.
    "USER_MODEL_GETTER": "directory_sync.scim.adapters.directory_record_model",
    "GROUP_MODEL": "directory_sync.models.DirectoryRecord",
    "USER_ADAPTER": "directory_sync.scim.adapters.UserAdapter",
    "GROUP_ADAPTER": "directory_sync.scim.adapters.GroupAdapter",
    "BASE_LOCATION_GETTER": "directory_sync.scim.adapters.base_location",
    "SCHEMAS_GETTER": "directory_sync.scim.discovery.schemas_getter",
    # Largest page a list/filter answers (advertised as filter.maxResults).
    "MAX_RESULTS": env_int("BEEM_SCIM_MAX_RESULTS", 200),
}
# Work one SCIM request may ask for (RFC 7644 §3.12 "tooMany" above them).
# Microsoft documents no batch size: its PATCH examples carry one operation per changed
# attribute (a user has ~20 mapped ones) and group member changes as one Add/Remove operation
# listing the members, or with aadOptscim062020 one remove operation per member.
BEEM_SCIM_MAX_PATCH_OPERATIONS = env_int("BEEM_SCIM_MAX_PATCH_OPERATIONS", 1000)
# Group members one POST/PUT/PATCH may name in all (each is an SQL parameter, twice at most).
BEEM_SCIM_MAX_MEMBERS_PER_REQUEST = env_int("BEEM_SCIM_MAX_MEMBERS_PER_REQUEST", 10_000)
# Values one user may hold in each multi-valued attribute (emails, phoneNumbers, addresses).
BEEM_SCIM_MAX_MULTI_VALUED = env_int("BEEM_SCIM_MAX_MULTI_VALUED", 100)

# PostgreSQL: how long one statement of a SCIM request may run, and how long it may wait for a
# row lock, before the request is answered 503 with Retry-After (nothing written). Well under
# the web server's worker timeout (gunicorn: 30 s), so the client gets a SCIM answer rather
# than a killed worker. Other requests and the Celery worker keep the server's settings. 0: none.
BEEM_SCIM_STATEMENT_TIMEOUT_MS = env_int("BEEM_SCIM_STATEMENT_TIMEOUT_MS", 10_000)
BEEM_SCIM_LOCK_TIMEOUT_MS = env_int("BEEM_SCIM_LOCK_TIMEOUT_MS", 5_000)

# Celery. No broker configured: tasks run eagerly in-process (the embedded default).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_BROKER_URL = CELERY_BROKER_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A job is acknowledged only after it ran; a worker killed mid-job gets it redelivered.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must not hang a SCIM request when Redis is down: the outbox sweep catches up.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("BEEM_BROKER_VISIBILITY_TIMEOUT", 600),
    "max_retries": 1,
    # kombu sleeps interval_start (default 2 s) before that one retry; a refused connection
    # would then hold every SCIM request for 2 s. Retry at once instead.
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "socket_connect_timeout": 1,
    "socket_timeout": 2,
}
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BEAT_SCHEDULE = {
    "redispatch-pending-events": {
        "task": "directory_sync.redispatch_pending_events",
        "schedule": timedelta(seconds=env_int("BEEM_REDISPATCH_INTERVAL_SECONDS", 60)),
    },
    "close-idle-runs": {
        "task": "directory_sync.close_idle_runs",
        "schedule": timedelta(minutes=1),
    },
    "purge-old-logs": {
        "task": "directory_sync.purge_old_logs",
        "schedule": crontab(hour=3, minute=17),
    },
    # SCIM list counts: fold the rows record writes append (directory_sync.store.counts).
    "fold-record-counts": {
        "task": "directory_sync.fold_record_counts",
        "schedule": timedelta(minutes=10),
    },
    "worker-heartbeat": {
        "task": "directory_sync.worker_heartbeat",
        "schedule": timedelta(seconds=30),
    },
}

# Directory sync behaviour.
BEEM_REQUEST_LOG_RETENTION_DAYS = env_int("BEEM_REQUEST_LOG_RETENTION_DAYS", 30)
# Which SCIM requests the request log keeps: all, writes (writes and errors), errors, off.
BEEM_REQUEST_LOG = os.environ.get("BEEM_REQUEST_LOG", "all").strip().lower() or "all"
if BEEM_REQUEST_LOG not in ("all", "writes", "errors", "off"):
    raise ImproperlyConfigured(
        f"BEEM_REQUEST_LOG must be one of all, writes, errors, off; got {BEEM_REQUEST_LOG!r}."
    )
# Request-log rows are buffered per process and written in bulk this often, after the answer
# (0: at the end of each request).
BEEM_REQUEST_LOG_FLUSH_SECONDS = env_int("BEEM_REQUEST_LOG_FLUSH_SECONDS", 1)
# Run request counts and SyncSettings.last_request_at are batched per process and written
# this often, after the answer (by a later request or the process's background flusher).
BEEM_RUN_COUNT_FLUSH_SECONDS = env_float("BEEM_RUN_COUNT_FLUSH_SECONDS", 1.0)
# The SCIM auth check caches a token's lookup per process this long (0: no cache): stopping
# sync, new credentials or a revoked token take effect on every process within it, while
# Entra's bursts do not pay an auth query per request. directory_sync.scim.auth.
BEEM_SCIM_AUTH_CACHE_SECONDS = env_float("BEEM_SCIM_AUTH_CACHE_SECONDS", 0.5)
BEEM_RUN_IDLE_MINUTES = env_int("BEEM_RUN_IDLE_MINUTES", 15)
# A probe joins the open run when a probe opened it less than this many seconds ago and no
# directory change was recorded in it yet (0: every probe opens a run). directory_sync.runs.
BEEM_PROBE_COALESCE_SECONDS = env_int("BEEM_PROBE_COALESCE_SECONDS", 5)
# A SCIM write wakes its organization's apply job at most once per this many seconds (the job
# drains every pending event; 0: one wake-up per write). directory_sync.outbox.
BEEM_APPLY_WAKEUP_SECONDS = env_int("BEEM_APPLY_WAKEUP_SECONDS", 1)
# Events still pending after this many seconds are re-dispatched by the sweep.
BEEM_REDISPATCH_AFTER_SECONDS = env_int("BEEM_REDISPATCH_AFTER_SECONDS", 60)

# Benchmarks only (bench/run.py): mounts /bench/ping, a bare JSON view used as the ceiling of
# the stack. Off by default; never needed in production.
BEEM_BENCH_ENDPOINT = env_bool("BEEM_BENCH_ENDPOINT", False)

# Operations (README "Operations"): /healthz and /metrics.
# /metrics answers only with `Authorization: Bearer <token>` when set; empty: open.
BEEM_METRICS_TOKEN = os.environ.get("BEEM_METRICS_TOKEN", "")
BEEM_HEALTHZ_BROKER_TIMEOUT_SECONDS = env_int("BEEM_HEALTHZ_BROKER_TIMEOUT_SECONDS", 1)
# /healthz reports "degraded" when no worker recorded a heartbeat for this long.
BEEM_WORKER_HEARTBEAT_MAX_AGE_SECONDS = env_int("BEEM_WORKER_HEARTBEAT_MAX_AGE_SECONDS", 120)
# A worker checks this often whether its consumer silently stopped receiving (messages wait,
# it could take one, it took none): it reconnects, then exits for its supervisor. 0: off.
BEEM_WORKER_WATCHDOG_SECONDS = env_int("BEEM_WORKER_WATCHDOG_SECONDS", 30)
# The worker imports this module at start so its worker_ready heartbeat receiver is connected.
CELERY_IMPORTS = ["directory_sync.health"]
# Keep Django's LOGGING in the worker too: same JSON format, request-id and redaction filters
# (beem_admin.logging also opts out of Celery's logging setup through its setup_logging signal).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOG_LEVEL = os.environ.get("BEEM_LOG_LEVEL", "INFO")
LOG_FORMAT = os.environ.get("BEEM_LOG_FORMAT", "text" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
        },
    },
    "filters": {
        "request_id": {"()": "beem_admin.logging.RequestIdFilter"},
        # Masks tokens, secrets, emails and phone numbers in every emitted line.
        "redact": {"()": "beem_admin.logging.RedactingFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # django-scim2 logs request bodies at DEBUG; never let them out.
        "django_scim": {"level": "WARNING"},
        "oauthlib": {"level": "WARNING"},
        # Drop Django's own handlers for these (set up before ours, without the request id and
        # redaction filters; runserver's request lines include SCIM filter values): their
        # records propagate to the root's console handler instead.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        # Never SQL with its parameters (names, emails, token checksums), even at DEBUG.
        "django.db.backends": {"level": "INFO"},
    },
}
