"""Okta's credential: a long-lived API token for the SCIM connector's "HTTP Header" mode.

Okta sends ``Authorization: Bearer <token>`` with the token an administrator pasted into its
provisioning settings (issue 17). Beem issues it: 256 random bits, shown once, stored only as
a keyed digest (HMAC-SHA256 with ``SECRET_KEY``, like client secrets: client_secrets.py says
why a password hash would protect nothing for a random secret). The digest has no per-row salt
so the SCIM auth check finds the settings row by the presented token in one indexed lookup;
with ``SECRET_KEY_FALLBACKS`` it looks for the digest under every key.

A rotation replaces the digest and a stop clears it: the old token stops matching at once.
Each is a ``SyncSettings.save``, whose post_save clears this process's SCIM auth cache
(scim/auth.py); other processes forget it within ``BEEM_SCIM_AUTH_CACHE_SECONDS``.
"""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone
from django.utils.crypto import salted_hmac

from members.models import Organization
from members.services import audit_record

from .models import SyncSettings

_KEY_SALT = "beem.directory_sync.okta_api_token"
# Recognisable in a secret scanner and in a support request, never enough to guess anything.
TOKEN_PREFIX = "beem_okta_"


@dataclass(frozen=True)
class IssuedApiToken:
    """What an administrator pastes into Okta. ``token`` is plaintext, shown once."""

    organization: Organization
    token: str
    rotated: bool


def api_token_digest(token: str, *, key: str | None = None) -> str:
    return salted_hmac(
        _KEY_SALT, token, secret=key or settings.SECRET_KEY, algorithm="sha256"
    ).hexdigest()


def api_token_digests(token: str) -> list[str]:
    """The digests ``token`` may be stored under (current key first, then the fallbacks)."""
    keys = (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)
    return [api_token_digest(token, key=key) for key in keys]


def api_token_settings(token: str) -> SyncSettings | None:
    """The sync settings (with organization) whose current Okta API token is ``token``."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    return (
        SyncSettings.objects.select_related("organization")
        .filter(api_token_digest__in=api_token_digests(token))
        .first()
    )


def api_token_grant_fields(token: str) -> dict | None:
    """What the SCIM auth check caches for ``token`` when it is an Okta API token (its
    ``_Grant`` fields), else None. The token never expires by itself: a rotation, a stop or a
    switch makes it stop matching."""
    sync_settings = api_token_settings(token)
    if sync_settings is None:
        return None
    return {
        "expires": datetime.max.replace(tzinfo=UTC),
        "created": sync_settings.api_token_created_at,
        "sync_settings": sync_settings,
        "directory": SyncSettings.Directory.OKTA,
    }


def api_token_issue(
    *, sync_settings: SyncSettings, actor=None, actor_label: str | None = None
) -> IssuedApiToken:
    """Give the (locked) settings a new API token; the previous one stops working when this
    commits. Callers are inside ``transaction.atomic`` with the row locked."""
    rotated = sync_settings.api_token_digest is not None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    sync_settings.api_token_digest = api_token_digest(token)
    sync_settings.api_token_created_at = timezone.now()
    update_fields = ["api_token_digest", "api_token_created_at", "updated_at"]
    if rotated:
        # A connection test made with the old token proves nothing about the new one.
        sync_settings.last_test_connection_at = None
        update_fields.append("last_test_connection_at")
    sync_settings.save(update_fields=update_fields)
    audit_record(
        organization=sync_settings.organization,
        action="sync.api_token_rotated" if rotated else "sync.api_token_issued",
        actor=actor,
        actor_label=actor_label,
        detail={"directory": SyncSettings.Directory.OKTA},
    )
    return IssuedApiToken(organization=sync_settings.organization, token=token, rotated=rotated)


def api_token_revoke(*, sync_settings: SyncSettings) -> bool:
    """Forget the (locked) settings' API token; whether there was one. The caller audits."""
    if sync_settings.api_token_digest is None:
        return False
    sync_settings.api_token_digest = None
    sync_settings.api_token_created_at = None
    sync_settings.save(update_fields=["api_token_digest", "api_token_created_at", "updated_at"])
    return True
