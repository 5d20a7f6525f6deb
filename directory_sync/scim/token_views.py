"""The OAuth2 token endpoint Entra ID calls (``/o/token/``, ``/o/revoke_token/``): the token
lifetime and the endpoint's rate limits. Which clients may get a token there is
:class:`auth.SyncOAuth2Validator`'s rule.
"""

import hashlib
import json
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import RevokeTokenView, TokenView

from .auth import SyncOAuth2Validator, basic_credentials

logger = logging.getLogger(__name__)


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
    basic = basic_credentials(request.META.get("HTTP_AUTHORIZATION", ""))
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
