"""Who may call the SCIM endpoint: the token endpoint's rules and the SCIM auth check.

Entra ID authenticates with the OAuth2 client credentials grant (django-oauth-toolkit issues
the token at ``/o/token/``) and sends ``Authorization: Bearer <token>`` on every SCIM call.
django-scim2's stock check wants an authenticated ``request.user``, which a client credentials
token never has (design.md §5), so ``SCIMAuthCheckMiddleware`` replaces it
(``SCIM_SERVICE_PROVIDER["AUTH_CHECK_MIDDLEWARE"]``) and checks token → application →
organization → sync status instead.
"""

import base64
import binascii
import hashlib
import json
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.log import log_response
from oauth2_provider.models import get_access_token_model, get_application_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import RevokeTokenView, TokenView
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors

from members.models import Organization

from .. import okta, process_state
from ..client_secrets import (
    client_secret_dummy_check,
    client_secret_hash,
    client_secret_matches,
    is_client_secret_hash,
)
from ..metrics import SCIM_UNAUTHENTICATED
from ..models import SyncSettings
from . import request_log
from .constants import ERROR_SCHEMA, SCIM_CONTENT_TYPE

logger = logging.getLogger(__name__)

REALM = 'Bearer realm="beem-scim"'
# Auth lookups are cached per process for at most BEEM_SCIM_AUTH_CACHE_SECONDS (0.5), so
# stopping sync, rotating the credentials or revoking a token takes effect on every web process
# within a second — half a second of cache leaves room for a request already in flight — while
# Entra's bursts do not pay a query per request (one auth query per process every 0.5 s).
_CACHE_MAX_ENTRIES = 10_000
READ_METHODS = frozenset({"GET", "HEAD"})
SEARCH_SUFFIX = "/.search"


def is_read(request) -> bool:
    """GET, and ``POST .../.search`` (RFC 7644 §3.4.3): a query sent in a body, which changes
    nothing, so it is run, logged and attributed to a provisioning run like a GET."""
    return request.method in READ_METHODS or (
        request.method == "POST" and request.path.endswith(SEARCH_SUFFIX)
    )


# --- token endpoint ----------------------------------------------------------------------


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, client_secret) of an ``Authorization: Basic`` header (RFC 6749 §2.3.1:
    both form-urlencoded inside), or None."""
    scheme, _sep, encoded = (header or "").partition(" ")
    if scheme != "Basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    client_id, sep, client_secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(client_secret)


class SyncOAuth2Validator(OAuth2Validator):
    """Only Entra sync clients, and only the client credentials grant, get tokens here."""

    def authenticate_client(self, request, *args, **kwargs):
        # Basic header or client_id/client_secret form fields: Entra uses either.
        basic = _basic_credentials(request.headers.get("HTTP_AUTHORIZATION", ""))
        if basic is not None and request.client_id and request.client_id != basic[0]:
            # Two credentials naming different clients: oauthlib would answer
            # "400 server_error (Discrepency found between client identifier)"; this is a
            # client authentication failure (RFC 6749 §5.2: 401 invalid_client).
            return False
        secret = basic[1] if basic is not None else (getattr(request, "client_secret", "") or "")
        if not super().authenticate_client(request, *args, **kwargs):
            if request.client is None:
                # An unknown Client Identifier costs what a wrong secret for a known one
                # costs, so the time does not tell which identifiers exist.
                client_secret_dummy_check(secret)
            return False
        application = request.client
        if not is_client_secret_hash(application.client_secret):
            self._upgrade_stored_secret(application, secret)
        # An OAuth application that is not some organization's Entra sync client (for example
        # one created by hand in the Django admin) must not reach the SCIM endpoint.
        return SyncSettings.objects.filter(oauth_application=application).exists()

    def _check_secret(self, provided_secret, stored_secret):
        if is_client_secret_hash(stored_secret):
            return client_secret_matches(provided_secret, stored_secret)
        # A secret stored by an earlier version (PBKDF2): checked once the slow way, then
        # rewritten by _upgrade_stored_secret.
        return super()._check_secret(provided_secret, stored_secret)

    @staticmethod
    def _upgrade_stored_secret(application, secret: str) -> None:
        stored = client_secret_hash(secret)
        # Only if the row still holds the hash just verified: a rotation in between wins.
        upgraded = (
            get_application_model()
            .objects.filter(pk=application.pk, client_secret=application.client_secret)
            .update(client_secret=stored, hash_client_secret=False)
        )
        if upgraded:
            application.client_secret = stored
            application.hash_client_secret = False

    def _save_bearer_token(self, token, request, *args, **kwargs):
        # Runs inside django-oauth-toolkit's transaction. A rotation locks the same row before
        # it replaces the secret and deletes the client's tokens (services._issue): re-reading
        # the row under the lock either precedes the rotation (whose delete then removes this
        # token) or sees the new secret, and then no token is issued for the old one.
        authenticated = request.client
        current = (
            get_application_model()
            .objects.select_for_update()
            .filter(pk=authenticated.pk)
            .values_list("client_id", "client_secret")
            .first()
        )
        if current != (authenticated.client_id, authenticated.client_secret):
            raise oauth2_errors.InvalidClientError(request=request)
        return super()._save_bearer_token(token, request, *args, **kwargs)

    def validate_scopes(self, client_id, scopes, client, request, *args, **kwargs):
        # Entra's Scope field is optional: an empty `scope=` reaches oauthlib as [""], which
        # would be refused as invalid_scope; treat it like no scope (the default, "scim").
        cleaned = [scope for scope in scopes if scope]
        if not cleaned:
            cleaned = list(self.get_default_scopes(client_id, request))
            request.scopes = cleaned
        return super().validate_scopes(client_id, cleaned, client, request, *args, **kwargs)

    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs):
        if grant_type != "client_credentials":
            return False
        return super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs)


RATE_LIMIT_WINDOW_SECONDS = 60


def _rate_limit_key(kind: str, value: str, window: int) -> str:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"beem:token-rate:{kind}:{digest}:{window}"


def _rate_count(kind: str, value: str, *, add: bool) -> tuple[int, int]:
    """This window's count for (kind, value), incremented when ``add``; and the seconds until
    the window ends. A cache that does not answer counts nothing (the endpoint stays up)."""
    now = time.time()
    window = int(now // RATE_LIMIT_WINDOW_SECONDS)
    retry_after = max(1, math.ceil((window + 1) * RATE_LIMIT_WINDOW_SECONDS - now))
    key = _rate_limit_key(kind, value, window)
    try:
        if not add:
            return int(cache.get(key) or 0), retry_after
        cache.add(key, 0, timeout=RATE_LIMIT_WINDOW_SECONDS + 5)
        return int(cache.incr(key)), retry_after
    except Exception:
        logger.warning("Token endpoint rate limit: the cache did not answer", exc_info=True)
        return 0, retry_after


def _presented_client_id(request: HttpRequest) -> str | None:
    basic = _basic_credentials(request.META.get("HTTP_AUTHORIZATION", ""))
    if basic is not None:
        return basic[0]
    return request.POST.get("client_id") or None


def _too_many_requests(retry_after: int) -> HttpResponse:
    body = {
        "error": "temporarily_unavailable",
        "error_description": "Too many token requests; retry after the time in Retry-After.",
    }
    response = HttpResponse(json.dumps(body), status=429, content_type="application/json")
    response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


class SyncTokenView(TokenView):
    """``POST /o/token/`` for Entra ID: ``expires_in`` follows BEEM_TOKEN_LIFETIME_SECONDS.

    Rate-limited (429 with ``Retry-After``) per Client Identifier (every request naming it,
    BEEM_TOKEN_RATE_LIMIT a minute) and per source address (failed client authentications,
    BEEM_TOKEN_RATE_LIMIT_PER_ADDRESS a minute), counted in the Django cache (Redis when
    REDIS_URL is set, so every process shares the counts).
    """

    validator_class = SyncOAuth2Validator
    _cores: dict[int, object] = {}

    @classmethod
    def get_oauthlib_core(cls):
        # django-oauth-toolkit builds its server once per view class with the lifetime it saw
        # first; key the cache by the configured lifetime so a changed setting applies.
        lifetime = settings.BEEM_TOKEN_LIFETIME_SECONDS
        core = cls._cores.get(lifetime)
        if core is None:
            kwargs = {**oauth2_settings.server_kwargs, "token_expires_in": lifetime}
            server = cls.get_server_class()(cls.get_validator_class()(), **kwargs)
            core = cls.get_oauthlib_backend_class()(server)
            cls._cores[lifetime] = core
        return core

    def post(self, request, *args, **kwargs):
        per_client = settings.BEEM_TOKEN_RATE_LIMIT
        per_address = settings.BEEM_TOKEN_RATE_LIMIT_PER_ADDRESS
        address = request.META.get("REMOTE_ADDR") or ""
        # Refused before any work: a flood costs one cache round trip per request.
        if per_address:
            failures, retry_after = _rate_count("address", address, add=False)
            if failures >= per_address:
                return _too_many_requests(retry_after)
        client_id = _presented_client_id(request)
        if per_client and client_id:
            count, retry_after = _rate_count("client", client_id, add=True)
            if count > per_client:
                return _too_many_requests(retry_after)
        response = super().post(request, *args, **kwargs)
        if per_address and response.status_code == 401:
            _rate_count("address", address, add=True)
        return response


class SyncRevokeTokenView(RevokeTokenView):
    """``POST /o/revoke_token/`` (RFC 7009), for the same clients as the token endpoint."""

    validator_class = SyncOAuth2Validator


# --- SCIM auth check ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Grant:
    """What a token stands for, as cached per process."""

    expires: datetime
    created: datetime
    sync_settings: SyncSettings | None
    # The directory the credential is for: an Entra OAuth token or Okta's API token.
    directory: str = SyncSettings.Directory.ENTRA_ID


_cache: dict[str, tuple[float, _Grant | None]] = {}
_cache_lock = threading.Lock()


def auth_cache_clear(**_kwargs) -> None:
    """Forget cached token lookups of this process (other processes expire theirs in ~1 s)."""
    with _cache_lock:
        _cache.clear()


process_state.register(auth_cache_clear, holds=("_cache",))


# A change made by this process is visible to its next request at once; other processes see
# it when their entry expires.
for _model in (SyncSettings, get_access_token_model(), get_application_model()):
    post_save.connect(auth_cache_clear, sender=_model, dispatch_uid=f"scim-auth-{_model}-save")
    post_delete.connect(auth_cache_clear, sender=_model, dispatch_uid=f"scim-auth-{_model}-del")


def _token_grant(token: str) -> _Grant | None:
    checksum = hashlib.sha256(token.encode("utf-8")).hexdigest()
    ttl = settings.BEEM_SCIM_AUTH_CACHE_SECONDS
    now = time.monotonic()
    cached = _cache.get(checksum)
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    # One query: token → application → sync settings → organization.
    access_token = (
        get_access_token_model()
        .objects.select_related("application__sync_settings__organization")
        .filter(token_checksum=checksum)
        .first()
    )
    grant = None
    if access_token is None:
        grant = _api_token_grant(token)
    else:
        application = access_token.application
        sync_settings = getattr(application, "sync_settings", None) if application else None
        grant = _Grant(
            expires=access_token.expires,
            created=access_token.created,
            sync_settings=sync_settings,
        )
    if ttl > 0:
        with _cache_lock:
            if len(_cache) >= _CACHE_MAX_ENTRIES:
                _cache.clear()
            _cache[checksum] = (now, grant)
    return grant


def _api_token_grant(token: str) -> _Grant | None:
    """Okta's long-lived API token (directory_sync.okta); it never expires by itself."""
    sync_settings = okta.api_token_settings(token)
    if sync_settings is None:
        return None
    return _Grant(
        expires=datetime.max.replace(tzinfo=UTC),
        created=sync_settings.api_token_created_at,
        sync_settings=sync_settings,
        directory=SyncSettings.Directory.OKTA,
    )


def _bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _sep, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


class AuthFailure(Exception):
    """``reason`` is a metrics label: one of a fixed set, never text a caller chose."""

    MISSING_TOKEN = "missing_token"
    INVALID_TOKEN = "invalid_token"
    EXPIRED_TOKEN = "expired_token"
    WRONG_TENANT = "wrong_tenant"
    # The token is this organization's own (its Entra, calling while sync is stopped).
    SYNC_INACTIVE = "sync_inactive"

    def __init__(self, detail: str, *, invalid_token: bool, reason: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.invalid_token = invalid_token
        self.reason = reason or (self.INVALID_TOKEN if invalid_token else self.MISSING_TOKEN)


def authenticate(*, request: HttpRequest, organization_id) -> SyncSettings:
    """The active sync settings the request's Bearer token grants, or :class:`AuthFailure`."""
    token = _bearer_token(request)
    if token is None:
        # RFC 6750 §3.1: a request without credentials gets no error code.
        raise AuthFailure(
            "Authentication required: send 'Authorization: Bearer <token>' with a token "
            "from the Token Endpoint.",
            invalid_token=False,
        )
    grant = _token_grant(token)
    if grant is None:
        raise AuthFailure("The access token is invalid or was revoked.", invalid_token=True)
    if grant.expires <= timezone.now():
        raise AuthFailure(
            "The access token has expired.", invalid_token=True, reason=AuthFailure.EXPIRED_TOKEN
        )
    sync_settings = grant.sync_settings
    organization_id = _as_id(organization_id)
    # The same answer whether the organization in the URL exists or not.
    if sync_settings is None or sync_settings.organization_id != organization_id:
        raise AuthFailure(
            "The access token is not valid for this Tenant URL.",
            invalid_token=True,
            reason=AuthFailure.WRONG_TENANT,
        )
    if sync_settings.directory != grant.directory:
        # An Entra token while Okta is the directory, or Okta's token after a switch to Entra.
        raise AuthFailure(
            "The access token is not valid for this organization's directory.",
            invalid_token=True,
        )
    issued = sync_settings.credentials_created_at
    if grant.directory == SyncSettings.Directory.OKTA:
        issued = sync_settings.api_token_created_at
    if issued is not None and grant.created < issued:
        # A token from before the current client secret (a rotation deletes them, and this
        # also refuses one whose lookup another request of this process cached).
        raise AuthFailure("The access token is invalid or was revoked.", invalid_token=True)
    if sync_settings.status != SyncSettings.Status.ACTIVE:
        raise AuthFailure(
            "Sync with Entra ID is not active for this organization in Beem; an administrator "
            "must activate it.",
            invalid_token=True,
            reason=AuthFailure.SYNC_INACTIVE,
        )
    return sync_settings


def unauthorized_response(failure: AuthFailure) -> HttpResponse:
    body = {"schemas": [ERROR_SCHEMA], "status": "401", "detail": failure.detail}
    response = HttpResponse(json.dumps(body), status=401, content_type=SCIM_CONTENT_TYPE)
    challenge = REALM
    if failure.invalid_token:
        challenge += ', error="invalid_token"'
    response["WWW-Authenticate"] = challenge
    return response


class SCIMAuthCheckMiddleware:
    """django-scim2 wraps ``SCIMView.dispatch`` with this (``AUTH_CHECK_MIDDLEWARE``): three
    steps, each with one responsibility, outermost first.

    1. :class:`RequestLogStep` times the request and writes its request-log row.
    2. :class:`AuthenticateStep` lets a request pass only with a valid, unexpired, unrevoked
       token of the application bound to the sync settings of the organization in the URL,
       while that sync is active; it then carries ``scim_organization`` and
       ``scim_sync_settings``.
    3. :class:`RunAttributionStep` attributes the request to its provisioning run
       (``scim_run``) and keeps a write refused with a 4xx as a failure of that run.
    """

    def __init__(self, get_response):
        self.handler = RequestLogStep(AuthenticateStep(RunAttributionStep(get_response)))

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return self.handler(request, *args, **kwargs)


class RequestLogStep:
    """Writes every authenticated request to the organization's request log. A 401 is kept
    out of it (anyone can send one) except when the token is the organization's own and its
    sync is stopped (Entra still calling): that one is logged without its request body."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        started = time.perf_counter()
        if not getattr(request, "request_id", None):
            request.request_id = uuid.uuid4().hex
        response = self.get_response(request, *args, **kwargs)
        if response.status_code == 501:
            # A feature this service does not offer (/.search, /Bulk, /Me: RFC 7644 §3.12),
            # asked for by a client: not a server fault, so not at ERROR level, where Django
            # logs every 5xx (issue 13).
            log_response(
                "Not Implemented: %s",
                request.path,
                response=response,
                request=request,
                level="info",
            )
        organization = getattr(request, "scim_organization", None)
        authenticated = organization is not None
        if not authenticated:
            organization = getattr(request, "scim_refused_organization", None)
        if organization is not None:
            request_log.request_log_write(
                organization=organization,
                run=getattr(request, "scim_run", None) if authenticated else None,
                request=request,
                response=response,
                duration_ms=(time.perf_counter() - started) * 1000,
                keep_request_body=authenticated,
            )
        return response


class AuthenticateStep:
    """401 unless :func:`authenticate` passes (counted in
    ``beem_scim_unauthenticated_requests_total`` by reason); a token of the organization
    whose sync is stopped marks the request's ``scim_refused_organization`` for the log."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        organization_id = kwargs.get("organization_id")
        try:
            sync_settings = authenticate(request=request, organization_id=organization_id)
        except AuthFailure as failure:
            SCIM_UNAUTHENTICATED.labels(reason=failure.reason).inc()
            if failure.reason == AuthFailure.SYNC_INACTIVE:
                request.scim_refused_organization = _organization_or_none(organization_id)
            return unauthorized_response(failure)
        request.scim_organization = sync_settings.organization
        request.scim_sync_settings = sync_settings
        return self.get_response(request, *args, **kwargs)


class RunAttributionStep:
    """Sets ``scim_run``: the provisioning run an authenticated request belongs to."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        from .. import runs

        sync_settings = request.scim_sync_settings
        db = connections[DEFAULT_DB_ALIAS]
        health_check_if_idle()
        read = is_read(request)
        deferred_write = not read and db.vendor == "postgresql"
        if not deferred_write:
            runs.last_request_note(sync_settings=sync_settings)
        if read:
            # A read changes nothing, so it learns its run after the view, which reads
            # the open run in its own statement (views._ResourceView._read): one round
            # trip per lookup. Entra's probe is such a lookup.
            response = self.get_response(request, *args, **kwargs)
            run = runs.run_for_request(
                sync_settings=sync_settings,
                request=request,
                open_run=getattr(request, "scim_open_run", None),
            )
            request.scim_run = run
        elif deferred_write:
            # A write's change events belong to its run: the record services read the
            # open run in the write's own statement and the run is settled after the view
            # (runs.WriteRun), inside the write's transaction. Everything that locks the
            # sync settings or run rows (opening a run, run counts, last_request_at) comes
            # after the record's own locks, in every write: one lock order, no deadlock
            # between two writes of which one opens a run.
            pending = runs.WriteRun(sync_settings.organization_id)
            request.scim_run = pending
            response = self.get_response(request, *args, **kwargs)
            if db.needs_rollback:
                # The view's transaction failed (a 500): nothing to attribute.
                run = request.scim_run = None
            else:
                run = runs.write_run_settle(
                    sync_settings=sync_settings, request=request, pending=pending
                )
                request.scim_run = run
                runs.last_request_note(sync_settings=sync_settings)
        else:
            # The embedded default (SQLite): the run first, in statements of its own.
            run = runs.run_for_request(sync_settings=sync_settings, request=request)
            request.scim_run = run
            response = self.get_response(request, *args, **kwargs)
        if run is not None:
            _database_answered()
            if not read and runs.is_refused_write(
                method=request.method, status=response.status_code
            ):
                runs.refusal_record(
                    run=run, request=request, response=response, scim_id=kwargs.get("uuid")
                )
        return response


# CONN_HEALTH_CHECKS costs a "SELECT 1" round trip at the start of every request, a third of
# a SCIM lookup's (bench profile). The check is for connections left idle (a database
# restart, an idle timeout); one that answered this process's previous SCIM request moments
# ago is not checked again. If it broke in between anyway, that request fails (Entra retries
# it) and Django drops the connection at the request's end.
HEALTH_CHECK_SKIP_SECONDS = 1.0
_database_ok: tuple[int, float] | None = None  # (id of the raw connection, monotonic time)


def health_check_if_idle() -> None:
    # connections[...] once: each attribute read through django.db.connection looks the
    # wrapper up again in an asgiref Local, which costs more than the check itself.
    wrapper = connections[DEFAULT_DB_ALIAS]
    raw = wrapper.connection
    if raw is None or not wrapper.health_check_enabled or wrapper.health_check_done:
        return
    last = _database_ok
    if (
        last is not None
        and last[0] == id(raw)
        and time.monotonic() - last[1] < (HEALTH_CHECK_SKIP_SECONDS)
    ):
        wrapper.health_check_done = True


def _database_answered() -> None:
    global _database_ok
    wrapper = connections[DEFAULT_DB_ALIAS]
    if wrapper.connection is not None and not wrapper.errors_occurred:
        _database_ok = (id(wrapper.connection), time.monotonic())


def _as_id(value) -> int | None:
    """The URL's organization id as a database id, or None (never a database error)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def _organization_or_none(organization_id) -> Organization | None:
    number = _as_id(organization_id)
    return Organization.objects.filter(pk=number).first() if number else None
