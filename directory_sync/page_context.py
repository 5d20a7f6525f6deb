"""What every Directory Syncs page's template gets: the sync's state and its directory.

The pages are the same for Entra ID and Okta; ``directory`` and ``sync_title`` name the
organization's directory so one template serves both (issue 17).
"""

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from . import directories, selectors
from .models import SyncSettings

SYNC_TITLES = {
    SyncSettings.Directory.ENTRA_ID: _("Sync with Entra ID"),
    SyncSettings.Directory.OKTA: _("Sync with Okta"),
}
SETUP_TITLES = {
    SyncSettings.Directory.ENTRA_ID: _("Set up in Entra ID"),
    SyncSettings.Directory.OKTA: _("Set up in Okta"),
}


# State labels that name Entra's own step, as Okta calls it.
OKTA_STATE_LABELS = {selectors.SyncState.WAITING: _("Waiting for Okta's connection test")}


def directory_context(sync_settings: SyncSettings | None, state: str | None = None) -> dict:
    directory = sync_settings.directory if sync_settings else SyncSettings.Directory.ENTRA_ID
    context = {
        "directory": directory,
        "directory_name": directories.NAMES[directory],
        "sync_title": SYNC_TITLES[directory],
        "setup_title": SETUP_TITLES[directory],
    }
    if directory == SyncSettings.Directory.OKTA and state in OKTA_STATE_LABELS:
        context["state_label"] = OKTA_STATE_LABELS[state]
    return context


def sync_page_context(request: HttpRequest, tab: str, **extra) -> dict:
    sync_settings = selectors.sync_settings_find(organization=request.organization)
    state = selectors.sync_state(sync_settings=sync_settings)
    return {
        "tab": tab,
        "sync_settings": sync_settings,
        "state": state,
        "state_label": selectors.SyncState.LABELS[state],
        "state_badge": selectors.SyncState.BADGES[state],
        "open_review_count": selectors.open_review_count(organization=request.organization),
        **directory_context(sync_settings, state),
        **extra,
    }
