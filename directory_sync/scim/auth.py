"""Who may call the SCIM endpoint: the token endpoint's client check and the SCIM token check.

Entra ID authenticates with the OAuth2 client credentials grant (django-oauth-toolkit issues
the token at ``/o/token/``, see ``token_views``) and sends ``Authorization: Bearer <token>`` on
every SCIM call; Okta sends its long-lived API token the same way. django-scim2's stock check
wants an authenticated ``request.user``, which a client credentials token never has (design.md
§5), so ``auth_middleware.SCIMAuthCheckMiddleware`` replaces it
(``SCIM_SERVICE_PROVIDER["AUTH_CHECK_MIDDLEWARE"]``) and calls :func:`authenticate` here, which
checks token → application → organization → sync status.
"""

import base64
import binascii
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_plus

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors

from members.models import Organization

from .. import okta, process_state
from ..client_secrets import (
    client_secret_dummy_check,
    client_secret_hash,
    client_secret_matches,
    is_client_secret_hash,
)
from ..models import SyncSettings
from .constants import ERROR_SCHEMA, SCIM_CONTENT_TYPE

REALM = 'Bearer realm="beem-scim"'
# Auth lookups are cached per process for at most BEEM_SCIM_AUTH_CACHE_SECONDS (0.5), so
# stopping sync, rotating the credentials or revoking a token takes effect on every web process
# within a second — half a second of cache leaves room for a request already in flight — while
# Entra's bursts do not pay a query per request (one auth query per process every 0.5 s).
_CACHE_MAX_ENTRIES = 10_000


# --- the token endpoint's client check ---------------------------------------------------


def basic_credentials(header: str) -> tuple[str, str] | None:
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
        basic = basic_credentials(request.headers.get("HTTP_AUTHORIZATION", ""))
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


# --- the SCIM token check -----------------------------------------------------------------


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
        fields = okta.api_token_grant_fields(token)  # Okta's API token, or None
        grant = _Grant(**fields) if fields else None
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
    if sync_settings.directory != grant.directory:  # e.g. an Entra token while Okta is it
        raise AuthFailure(
            "The access token is not valid for this organization's directory.", invalid_token=True
        )
    issued = sync_settings.credentials_created_at
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


def _as_id(value) -> int | None:
    """The URL's organization id as a database id, or None (never a database error)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def organization_or_none(organization_id) -> Organization | None:
    number = _as_id(organization_id)
    return Organization.objects.filter(pk=number).first() if number else None
