"""The Okta pages (issue 17): "Set up in Okta", a new API token, and switching the directory.

Status, Set up in Beem, runs, review, stop/reactivate and audit are the Entra pages
(views.py), which name the organization's directory (page_context.py).
"""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from members.permissions import administrator_required

from . import directories, selectors
from . import services as sync_services
from .forms import ConfirmForm
from .models import DirectoryRecord, SyncSettings
from .okta import IssuedApiToken
from .page_context import sync_page_context

__all__ = ["IssuedApiToken", "is_okta", "okta_page"]

Directory = SyncSettings.Directory

# Okta's names for the attributes Beem reads (Okta's "SCIM 2.0 protocol reference": its
# base attributes, mapped to SCIM as the App Integration Wizard's SCIM template does).
ATTRIBUTE_MAPPING_USERS = [
    ("userName", "userName"),
    ("givenName", "name.givenName"),
    ("familyName", "name.familyName"),
    ("email", 'emails[type eq "work"].value'),
    ("primaryPhone / mobilePhone", 'phoneNumbers[type eq "mobile"].value'),
    ("title", "title"),
    ("department", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
    ("manager", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"),
    (
        "employeeNumber",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    ),
]
PROVISIONING_ACTIONS = [
    "Import New Users and Profile Updates",
    "Push New Users",
    "Push Profile Updates",
    "Push Groups",
]


def is_okta(sync_settings: SyncSettings | None) -> bool:
    return sync_settings is not None and sync_settings.directory == Directory.OKTA


def activated_message(sync_settings: SyncSettings | None) -> str | None:
    if is_okta(sync_settings):
        return _("Sync with Okta is active. Now set it up in Okta.")
    return None


def reactivated_message(sync_settings: SyncSettings | None) -> str | None:
    if is_okta(sync_settings):
        return _(
            "Sync with Okta is active again. Paste the new API token into Okta and click Test "
            "API Credentials."
        )
    return None


def stopped_message(sync_settings: SyncSettings | None) -> str | None:
    if is_okta(sync_settings):
        return _("Sync with Okta is stopped; its API token is revoked.")
    return None


@require_GET
@never_cache
@administrator_required
def sync_okta(request: HttpRequest) -> HttpResponse:
    """ "Set up in Okta": what to enter in Okta's provisioning settings."""
    sync_settings = selectors.sync_settings_find(organization=request.organization)
    if not is_okta(sync_settings):
        return redirect("directory_sync:sync_entra")
    return okta_page(request)


def okta_page(request: HttpRequest, *, issued: IssuedApiToken | None = None) -> HttpResponse:
    """With ``issued``, the answer to the POST that issued the token: the only place its
    plaintext ever appears (never stored, not even in the session)."""
    organization = request.organization
    ctx = sync_page_context(request, "entra")
    ctx.update(
        tenant_url=sync_services.tenant_url(organization=organization, request=request),
        api_token=issued.token if issued else None,
        token_rotated=bool(issued and issued.rotated),
        has_token=ctx["sync_settings"] is not None
        and ctx["sync_settings"].api_token_digest is not None,
        okta_portal_url=directories.PORTAL_URLS[Directory.OKTA],
        mapping_users=ATTRIBUTE_MAPPING_USERS,
        provisioning_actions=PROVISIONING_ACTIONS,
    )
    response = render(request, "directory_sync/sync_okta.html", ctx)
    add_never_cache_headers(response)
    return response


@require_http_methods(["GET", "POST"])
@administrator_required
def api_token_rotate(request: HttpRequest) -> HttpResponse:
    """ "New API token" after a confirmation: the old token stops working at once."""
    sync_settings = selectors.sync_settings_find(organization=request.organization)
    if not is_okta(sync_settings):
        return redirect("directory_sync:sync_entra")
    if sync_settings.api_token_digest is None:
        messages.info(request, _("Complete Set up in Beem and click Save and Activate first."))
        return redirect("directory_sync:sync_settings_form")
    form = ConfirmForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        issued = directories.api_token_rotate(
            organization=request.organization,
            actor=request.user,
            actor_label=f"admin:{request.user.get_username()}",
        )
        messages.success(
            request,
            _(
                "A new API token was created. Paste it into Okta now: it is shown only on this "
                "page."
            ),
        )
        return okta_page(request, issued=issued)
    return render(
        request,
        "directory_sync/okta_token_rotate.html",
        sync_page_context(request, "entra", form=form),
    )


@require_http_methods(["GET", "POST"])
@administrator_required
def directory_switch(request: HttpRequest, directory: str) -> HttpResponse:
    """Sync with another directory, after a confirmation that says what happens."""
    if directory not in Directory.values:
        raise Http404
    ctx = sync_page_context(request, "list")
    current = ctx["directory"]
    if current == directory:
        return redirect("directory_sync:sync_settings_form")
    form = ConfirmForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        directories.directory_switch(
            organization=request.organization,
            directory=directory,
            actor=request.user,
            actor_label=f"admin:{request.user.get_username()}",
        )
        messages.success(
            request,
            _("%(name)s is now your directory. Review Set up in Beem and click Save and Activate.")
            % {"name": directories.NAMES[directory]},
        )
        return redirect("directory_sync:sync_settings_form")
    ctx.update(
        form=form,
        target=directory,
        target_name=directories.NAMES[directory],
        current_name=directories.NAMES[current],
        users_synced=DirectoryRecord.objects.filter(
            organization=request.organization,
            resource_type=DirectoryRecord.ResourceType.USER,
            deleted_at__isnull=True,
        ).count(),
    )
    return render(request, "directory_sync/directory_switch.html", ctx)
