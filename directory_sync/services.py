"""Writes to an organization's Entra ID sync: its settings, status and OAuth2 credentials.

Every function is keyword-only, owns its transaction and writes an audit entry through
``members.services.audit_record`` (secrets never appear in an audit detail).
"""

from dataclasses import dataclass

import phonenumbers
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from oauth2_provider.generators import generate_client_id, generate_client_secret
from oauth2_provider.models import get_access_token_model, get_application_model

from members.models import Organization
from members.services import audit_record

from . import okta
from .client_secrets import client_secret_hash
from .models import SyncSettings

SCIM_PATH = "/scim/v2/{organization_id}"
TOKEN_PATH = "/o/token/"
# Where `make run` serves; used only when neither BEEM_PUBLIC_URL nor a request is available
# (a management command on a laptop).
FALLBACK_BASE_URL = "http://127.0.0.1:8000"

# Fields an administrator may change with sync_settings_update (status has its own services).
EDITABLE_FIELDS = (
    "deletion_rule",
    "identify_by",
    "department_format",
    "department_delimiter",
    "duplicate_department_policy",
    "default_phone_country",
)
_CHOICES = {
    "deletion_rule": SyncSettings.DeletionRule,
    "identify_by": SyncSettings.IdentifyBy,
    "department_format": SyncSettings.DepartmentFormat,
    "duplicate_department_policy": SyncSettings.DuplicateDepartmentPolicy,
}


class SyncSettingsError(ValueError):
    """A sync settings change was refused; ``field`` names the offending setting."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class IssuedCredentials:
    """What an administrator pastes into Entra ID. ``client_secret`` is plaintext, shown once:
    only its keyed hash is stored. ``rotated``: a new secret for the existing Client Identifier
    (the identifier is unchanged)."""

    organization: Organization
    client_id: str
    client_secret: str
    rotated: bool


# --- settings ----------------------------------------------------------------------------


def sync_settings_get(*, organization: Organization) -> SyncSettings:
    """The organization's sync settings, created with the defaults on first use."""
    sync_settings, _created = SyncSettings.objects.select_related(
        "organization", "oauth_application"
    ).get_or_create(organization=organization)
    return sync_settings


def _locked_settings(organization: Organization) -> SyncSettings:
    """Get-or-create and lock the row; callers are inside ``transaction.atomic``."""
    SyncSettings.objects.get_or_create(organization=organization)
    # of=("self",): PostgreSQL refuses FOR UPDATE on the nullable side of the outer join to
    # oauth_application; only the settings row needs the lock.
    return (
        SyncSettings.objects.select_for_update(of=("self",))
        .select_related("organization", "oauth_application")
        .get(organization=organization)
    )


def _clean_field(name: str, value) -> str:
    if name not in EDITABLE_FIELDS:
        raise SyncSettingsError(_("Unknown sync setting %(name)s.") % {"name": name}, field=name)
    value = "" if value is None else str(value).strip()
    if name in _CHOICES:
        if value not in _CHOICES[name].values:
            raise SyncSettingsError(
                _("%(value)s is not a valid choice for %(name)s.") % {"value": value, "name": name},
                field=name,
            )
    elif name == "department_delimiter":
        # Whitespace is a legitimate delimiter only if it is not the whole value after
        # stripping; an empty delimiter would make every structure string one department.
        if not value:
            raise SyncSettingsError(_("The department delimiter cannot be empty."), field=name)
        if len(value) > SyncSettings._meta.get_field(name).max_length:
            raise SyncSettingsError(
                _("The department delimiter can be at most 5 characters."), field=name
            )
    elif name == "default_phone_country":
        value = value.upper()
        if value and value not in phonenumbers.SUPPORTED_REGIONS:
            raise SyncSettingsError(
                _("%(value)s is not a known country code; use two letters such as SA.")
                % {"value": value},
                field=name,
            )
    return value


def sync_settings_update(
    *,
    organization: Organization,
    actor=None,
    actor_label: str | None = None,
    **fields,
) -> SyncSettings:
    """Change the "Set up in Beem" choices; only real changes are saved and audited.

    Raises :class:`SyncSettingsError` (with ``field``) for an unknown setting or a bad value;
    nothing is saved then.
    """
    clean = {name: _clean_field(name, value) for name, value in fields.items()}
    with transaction.atomic():
        sync_settings = _locked_settings(organization)
        changed = {
            name: {"from": getattr(sync_settings, name), "to": value}
            for name, value in clean.items()
            if getattr(sync_settings, name) != value
        }
        if not changed:
            return sync_settings
        for name, change in changed.items():
            setattr(sync_settings, name, change["to"])
        sync_settings.save(update_fields=[*changed, "updated_at"])
        audit_record(
            organization=organization,
            action="sync.settings_updated",
            actor=actor,
            actor_label=actor_label,
            detail={"changed": changed},
        )
    return sync_settings


# --- status ------------------------------------------------------------------------------


def _directory_detail(sync_settings: SyncSettings) -> dict:
    # Entries without "directory" are Entra ID's (all of them before Okta, issue 17).
    if sync_settings.directory == SyncSettings.Directory.OKTA:
        return {"directory": sync_settings.directory}
    return {}


def sync_activate(
    *, organization: Organization, actor=None, actor_label: str | None = None
) -> IssuedCredentials | okta.IssuedApiToken | None:
    """Activate sync ("Save and Activate", or reactivate after a stop).

    The directory cannot connect without credentials, so activating a sync that has none
    issues them in the same transaction and returns them (the only time the secret is
    readable). With credentials already in place it returns ``None``: reactivation keeps the
    client id and secret pasted into Entra ID. Okta's API token is revoked by a stop, so
    reactivating Okta issues a new one. Activating an active sync changes nothing.
    """
    with transaction.atomic():
        sync_settings = _locked_settings(organization)
        issued = None
        if sync_settings.directory == SyncSettings.Directory.OKTA:
            if sync_settings.api_token_digest is None:
                issued = okta.api_token_issue(
                    sync_settings=sync_settings, actor=actor, actor_label=actor_label
                )
        elif sync_settings.oauth_application_id is None:
            issued = _issue(
                sync_settings=sync_settings, actor=actor, actor_label=actor_label, audit=True
            )
        if sync_settings.status == SyncSettings.Status.ACTIVE:
            return issued
        previous = sync_settings.status
        sync_settings.status = SyncSettings.Status.ACTIVE
        sync_settings.activated_at = timezone.now()
        sync_settings.save(update_fields=["status", "activated_at", "updated_at"])
        audit_record(
            organization=organization,
            action="sync.activated",
            actor=actor,
            actor_label=actor_label,
            detail={
                "previous_status": previous,
                "credentials_issued": issued is not None,
                **_directory_detail(sync_settings),
            },
        )
    return issued


def sync_stop(*, organization: Organization, actor=None, actor_label: str | None = None) -> None:
    """Stop sync: from now on every SCIM call answers 401 (Entra quarantines the job).

    Entra's credentials are kept (and tokens may still be issued) so that reactivating needs
    no new secret in Entra ID; only the SCIM endpoint refuses. Okta's API token is revoked
    (issue 17: a long-lived token dies with the sync it was issued for). Stopping a sync that
    is not active changes nothing.
    """
    with transaction.atomic():
        sync_settings = _locked_settings(organization)
        if sync_settings.status != SyncSettings.Status.ACTIVE:
            return
        okta.api_token_revoke(sync_settings=sync_settings)
        sync_settings.status = SyncSettings.Status.STOPPED
        sync_settings.stopped_at = timezone.now()
        sync_settings.save(update_fields=["status", "stopped_at", "updated_at"])
        audit_record(
            organization=organization,
            action="sync.stopped",
            actor=actor,
            actor_label=actor_label,
            detail=_directory_detail(sync_settings),
        )


# --- credentials -------------------------------------------------------------------------


def _application_name(organization: Organization) -> str:
    return f"Entra ID sync – {organization.name}"[:255]


def _issue(
    *, sync_settings: SyncSettings, actor, actor_label: str | None, audit: bool
) -> IssuedCredentials:
    """Create the organization's OAuth2 client, or give the existing one a new secret.

    A new secret keeps the Client Identifier: the identifier is not a secret, and an admin
    who pastes only the new secret into Entra ID must get a working connection. The old
    secret and every token obtained with it stop working when this commits.
    """
    Application = get_application_model()
    AccessToken = get_access_token_model()
    organization = sync_settings.organization
    client_secret = generate_client_secret()
    application = sync_settings.oauth_application
    rotated = application is not None
    if application is None:
        application = Application(
            name=_application_name(organization),
            client_id=generate_client_id(),
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            user=None,
            redirect_uris="",
            skip_authorization=True,
        )
    else:
        # The token endpoint locks this row while it issues a token and re-checks the secret
        # it authenticated (SyncOAuth2Validator._save_bearer_token): a token request that read
        # the old secret either committed its token before this lock (and the delete below
        # removes it) or finds the new secret and issues nothing.
        application = Application.objects.select_for_update().get(pk=application.pk)
    issued_at = timezone.now()
    application.name = _application_name(organization)
    # A keyed SHA-256, not a password hash (client_secrets.py explains why). Stored as is:
    # hash_client_secret=False stops django-oauth-toolkit from hashing it a second time.
    application.hash_client_secret = False
    application.client_secret = client_secret_hash(client_secret)
    application.save()
    if rotated:
        # Deleting is how django-oauth-toolkit revokes an access token. The SCIM auth check
        # also refuses any token created before credentials_created_at, so a process that
        # cached a token's lookup refuses it within its cache time.
        AccessToken.objects.filter(application=application).delete()
    sync_settings.oauth_application = application
    sync_settings.credentials_created_at = issued_at
    update_fields = ["oauth_application", "credentials_created_at", "updated_at"]
    if rotated:
        # The status shows "Waiting for Test Connection" again until Entra ID calls with the
        # new secret: a Test Connection made with the old one proves nothing now.
        sync_settings.last_test_connection_at = None
        update_fields.append("last_test_connection_at")
    sync_settings.save(update_fields=update_fields)
    if audit:
        audit_record(
            organization=organization,
            action="sync.credentials_rotated" if rotated else "sync.credentials_issued",
            actor=actor,
            actor_label=actor_label,
            detail={"client_id": application.client_id, "changed": ["client_secret"]}
            if rotated
            else {"client_id": application.client_id},
        )
    return IssuedCredentials(
        organization=organization,
        client_id=application.client_id,
        client_secret=client_secret,
        rotated=rotated,
    )


def credentials_issue(
    *, organization: Organization, actor=None, actor_label: str | None = None
) -> IssuedCredentials:
    """Create the organization's OAuth2 client, or issue it a new client secret (the Client
    Identifier stays; the old secret and every token obtained with it stop working at once).
    The plaintext secret is only in the returned value."""
    with transaction.atomic():
        sync_settings = _locked_settings(organization)
        return _issue(sync_settings=sync_settings, actor=actor, actor_label=actor_label, audit=True)


# --- URLs shown to the administrator ------------------------------------------------------


def _base_url(request: HttpRequest | None) -> str:
    if settings.BEEM_PUBLIC_URL:
        return settings.BEEM_PUBLIC_URL.rstrip("/")
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    return FALLBACK_BASE_URL


def tenant_url(*, organization: Organization, request: HttpRequest | None = None) -> str:
    """The SCIM base URL Entra ID calls ("Tenant URL"); it identifies the organization."""
    return _base_url(request) + SCIM_PATH.format(organization_id=organization.pk)


def token_endpoint_url(*, request: HttpRequest | None = None) -> str:
    """The OAuth2 token endpoint Entra ID calls ("Token Endpoint")."""
    return _base_url(request) + TOKEN_PATH
