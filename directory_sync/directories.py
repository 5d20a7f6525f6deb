"""The directories an organization can sync with (Entra ID or Okta), one at a time (issue 17).

The SCIM endpoint, the apply engine and the rules are shared; what differs per directory is its
credential (Entra: an OAuth2 client; Okta: an API token, ``okta.py``), how its runs start and
what the admin pages say. ``SyncSettings.directory`` names the organization's directory; only
that directory's credential is accepted on its Tenant URL.
"""

from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from members.models import Organization
from members.services import audit_record

from . import okta
from .models import SyncSettings
from .services import _locked_settings

Directory = SyncSettings.Directory

# What the pages call each directory, and where its admin console is.
NAMES = {Directory.ENTRA_ID: _("Entra ID"), Directory.OKTA: _("Okta")}
PORTAL_URLS = {
    Directory.ENTRA_ID: "https://entra.microsoft.com/",
    Directory.OKTA: "https://login.okta.com/",
}


class DirectoryError(ValueError):
    pass


def directory_name(sync_settings: SyncSettings | None) -> str:
    directory = sync_settings.directory if sync_settings is not None else Directory.ENTRA_ID
    return str(NAMES[directory])


def has_credentials(sync_settings: SyncSettings | None) -> bool:
    """Whether the directory has been given its credential (the setup page has something to
    show)."""
    if sync_settings is None:
        return False
    if sync_settings.directory == Directory.OKTA:
        return sync_settings.api_token_digest is not None
    return sync_settings.oauth_application_id is not None


def directory_switch(
    *, organization: Organization, directory: str, actor=None, actor_label: str | None = None
) -> SyncSettings:
    """Make ``directory`` the organization's directory (an explicit action, confirmed).

    The previous directory's credential is revoked at once (Entra's OAuth client and its
    tokens are deleted; Okta's API token is forgotten) and the sync is no longer configured:
    Save and Activate issues the new directory's credential. Members, groups and directory
    records stay as they are: the new directory looks users up by userName before creating
    them and so takes over those it sends; the others stay until an administrator deletes
    them. The "Set up in Beem" choices are kept.
    """
    if directory not in Directory.values:
        raise DirectoryError(
            _("%(value)s is not a directory Beem syncs with; choose entra_id or okta.")
            % {"value": directory}
        )
    with transaction.atomic():
        sync_settings = _locked_settings(organization)
        previous = sync_settings.directory
        if previous == directory:
            return sync_settings
        application = sync_settings.oauth_application
        okta.api_token_revoke(sync_settings=sync_settings)
        sync_settings.directory = directory
        sync_settings.status = SyncSettings.Status.NOT_CONFIGURED
        sync_settings.oauth_application = None
        sync_settings.credentials_created_at = None
        sync_settings.last_test_connection_at = None
        sync_settings.save(
            update_fields=[
                "directory",
                "status",
                "oauth_application",
                "credentials_created_at",
                "last_test_connection_at",
                "updated_at",
            ]
        )
        if application is not None:
            # Deleting the client deletes its tokens (cascade): Entra is refused at once.
            application.delete()
        audit_record(
            organization=organization,
            action="sync.directory_switched",
            actor=actor,
            actor_label=actor_label,
            detail={"from": previous, "to": directory},
        )
    return sync_settings


def api_token_rotate(
    *, organization: Organization, actor=None, actor_label: str | None = None
) -> okta.IssuedApiToken:
    """A new Okta API token; the old one is refused from this commit on."""
    with transaction.atomic():
        sync_settings = _locked_settings(organization)
        if sync_settings.directory != Directory.OKTA:
            raise DirectoryError(_("This organization's directory is not Okta."))
        return okta.api_token_issue(
            sync_settings=sync_settings, actor=actor, actor_label=actor_label
        )


def starts_run(*, sync_settings: SyncSettings, request: HttpRequest) -> bool:
    """Whether a request opens a new run as Entra's probe does: Okta's connection test
    (``GET /Users?startIndex=1&count=2``) and the first page of its import
    (``GET /Users?startIndex=1&count=100``), i.e. an unfiltered first page of /Users. Later
    import pages (``startIndex=101`` …) and /Groups belong to the run the first page opened."""
    if sync_settings.directory != Directory.OKTA or request.method != "GET":
        return False
    if not request.path.rstrip("/").endswith("/Users"):
        return False
    query = request.GET
    return "filter" not in query and query.get("startIndex", "1").strip() == "1"
