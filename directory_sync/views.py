"""The "Sync with Entra ID" admin pages (Basic Settings → Directory Syncs → Sync with Entra ID).

Views do HTTP only: check the administrator (``members.permissions``), validate a form, call
one service or selector, render. Every read is scoped to ``request.organization``; another
organization's id answers 404 exactly like a missing one.
"""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from members.permissions import administrator_required

from . import okta_views, page_context, selectors, sentences
from . import services as sync_services
from .forms import (
    ConfirmForm,
    EventFilterForm,
    NewSecretForm,
    SyncSettingsForm,
)
from .models import ProvisioningRun, SyncSettings
from .scim.constants import ENTERPRISE_SCHEMA
from .selectors import run_summary
from .services import IssuedCredentials, SyncSettingsError

ENTRA_PORTAL_URL = "https://entra.microsoft.com/"
EVENTS_PER_PAGE = 50
REQUESTS_PER_PAGE = 50
RUNS_PER_PAGE = 25
AUDIT_PER_PAGE = 50


_context = page_context.sync_page_context


# The parts of the Status and Reactivate pages that follow Entra ID live. The first render
# includes these templates and every poll renders them again from the same ``LiveStatus``: the
# header badge, the hint and the counters cannot disagree (issue 18).
LIVE_PARTS = {
    "badge": "directory_sync/_state_badge.html",
    "review_badge": "directory_sync/_review_badge.html",
    "overview": "directory_sync/_status_overview.html",
    "test_connection": "directory_sync/_test_connection.html",
}


def _live_context(request: HttpRequest, tab: str, **extra) -> dict:
    live = selectors.live_status(organization=request.organization)
    return {
        "tab": tab,
        "live": live,
        "sync_settings": live.sync_settings,
        "state": live.state,
        "state_label": live.label,
        "state_badge": live.badge,
        "open_review_count": live.open_review_count,
        "progress": live.progress,
        "pending_total": live.pending_total,
        **page_context.directory_context(live.sync_settings, live.state),
        **extra,
    }


def _page(request: HttpRequest, items, per_page: int, param: str = "page"):
    return Paginator(items, per_page).get_page(request.GET.get(param))


def _actor_kwargs(request: HttpRequest) -> dict:
    return {"actor": request.user, "actor_label": f"admin:{request.user.get_username()}"}


def _form_error_from(form, exc: SyncSettingsError) -> None:
    """Put a service's refusal on the form field it names (never a 500)."""
    form.add_error(exc.field if exc.field in form.fields else None, str(exc))


# --- Directory Syncs and status ------------------------------------------------------------


@require_GET
@administrator_required
def sync_list(request: HttpRequest) -> HttpResponse:
    """Basic Settings → Directory Syncs: the directory syncs Beem offers, with their status."""
    return render(request, "directory_sync/sync_list.html", _context(request, "list"))


@require_GET
@administrator_required
def sync_status(request: HttpRequest) -> HttpResponse:
    return render(request, "directory_sync/sync_status.html", _live_context(request, "status"))


def _iso(value) -> str | None:
    return value.isoformat() if value else None


@require_GET
@never_cache
@administrator_required
def sync_status_json(request: HttpRequest) -> JsonResponse:
    """Polled by the status and reactivate pages to update without a reload: the facts, and
    ``html``, the page's live parts rendered by the templates of its first render."""
    ctx = _live_context(request, "status")
    live = ctx["live"]
    sync_settings, state, progress = live.sync_settings, live.state, live.progress
    run = progress.run
    return JsonResponse(
        {
            "html": {
                name: render_to_string(template, ctx, request)
                for name, template in LIVE_PARTS.items()
            },
            "state": state,
            "state_label": str(ctx["state_label"]),
            "last_test_connection_at": _iso(
                sync_settings.last_test_connection_at if sync_settings else None
            ),
            "last_request_at": _iso(sync_settings.last_request_at if sync_settings else None),
            "activated_at": _iso(sync_settings.activated_at if sync_settings else None),
            "pending_total": live.pending_total,
            "open_review_count": live.open_review_count,
            "users_synced": live.users_synced,
            "groups_synced": live.groups_synced,
            "run": None
            if run is None
            else {
                "id": run.pk,
                "started_at": _iso(run.started_at),
                "ended_at": _iso(run.ended_at),
                "requests_received": run.requests_received,
                "pending": progress.pending,
                "applied": progress.applied,
                "failed": progress.failed,
                "skipped": progress.skipped,
            },
        }
    )


# --- Set up in Beem ------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@administrator_required
def sync_settings_form(request: HttpRequest) -> HttpResponse:
    """ "Set up in Beem"; Save and Activate validates, saves, issues credentials, activates."""
    organization = request.organization
    current = selectors.sync_settings_find(organization=organization)
    if request.method == "POST":
        form = SyncSettingsForm(request.POST, current=current)
        if form.is_valid():
            try:
                issued = _save_and_activate(request, form.cleaned_data)
            except SyncSettingsError as exc:
                _form_error_from(form, exc)
            else:
                was_active = current is not None and current.is_active
                messages.success(
                    request,
                    _("Settings saved.")
                    if was_active
                    else okta_views.activated_message(current)
                    or _("Sync with Entra ID is active. Now set it up in Entra ID."),
                )
                if form.identify_by_change is not None:
                    messages.success(request, form.identify_by_change.done_message())
                if issued is not None:
                    return _entra_page(request, issued=issued)
                return redirect("directory_sync:sync_entra")
    else:
        form = SyncSettingsForm(initial=SyncSettingsForm.initial_from(current))
    ctx = _context(
        request,
        "setup",
        form=form,
        counts=selectors.member_identity_counts(organization=organization),
    )
    return render(request, "directory_sync/sync_settings_form.html", ctx, status=200)


def _save_and_activate(request: HttpRequest, data: dict) -> IssuedCredentials | None:
    organization = request.organization
    actor = _actor_kwargs(request)
    sync_settings = sync_services.sync_settings_update(organization=organization, **actor, **data)
    # A stopped sync is restarted from the Reactivate page (with its checklist), not here.
    if sync_settings.status == SyncSettings.Status.NOT_CONFIGURED:
        return sync_services.sync_activate(organization=organization, **actor)
    return None


# --- Set up in Entra ID --------------------------------------------------------------------

ATTRIBUTE_MAPPING_USERS = [
    ("userName", "userPrincipalName"),
    ("active", 'Switch([IsSoftDeleted], , "False", "True", "True", "False")'),
    ("displayName", "displayName"),
    ('emails[type eq "work"].value', "mail"),
    ('phoneNumbers[type eq "mobile"].value', "mobile"),
    ("name.givenName", "givenName"),
    ("name.familyName", "surname"),
    ("title", "jobTitle"),
    ('addresses[type eq "work"].country', "country"),
    (f"{ENTERPRISE_SCHEMA}:employeeNumber", "employeeid"),
    (f"{ENTERPRISE_SCHEMA}:manager", "manager"),
    (f"{ENTERPRISE_SCHEMA}:department", "department"),
    ("externalId", "objectId"),
]
ATTRIBUTE_MAPPING_GROUPS = [("displayName", "displayName"), ("members", "members")]


@require_GET
@never_cache
@administrator_required
def sync_entra(request: HttpRequest) -> HttpResponse:
    """ "Set up in Entra ID": what to paste into Entra's provisioning page."""
    sync_settings = selectors.sync_settings_find(organization=request.organization)
    if okta_views.is_okta(sync_settings):
        return redirect("directory_sync:sync_okta")
    if sync_settings is None or sync_settings.oauth_application_id is None:
        messages.info(request, _("Complete Set up in Beem and click Save and Activate first."))
        return redirect("directory_sync:sync_settings_form")
    return _entra_page(request)


def _entra_page(request: HttpRequest, *, issued: IssuedCredentials | None = None) -> HttpResponse:
    """The "Set up in Entra ID" page; with ``issued``, the answer to the POST that issued the
    secret is the only place its plaintext ever appears. It is never stored in the session
    (nor anywhere else): a reload or a later visit shows it hidden."""
    if isinstance(issued, okta_views.IssuedApiToken):
        return okta_views.okta_page(request, issued=issued)
    organization = request.organization
    ctx = _context(request, "entra")
    ctx.update(
        tenant_url=sync_services.tenant_url(organization=organization, request=request),
        token_endpoint=sync_services.token_endpoint_url(request=request),
        client_id=ctx["sync_settings"].oauth_application.client_id,
        client_secret=issued.client_secret if issued else None,
        secret_rotated=bool(issued and issued.rotated),
        entra_portal_url=ENTRA_PORTAL_URL,
        mapping_users=ATTRIBUTE_MAPPING_USERS,
        mapping_groups=ATTRIBUTE_MAPPING_GROUPS,
    )
    response = render(request, "directory_sync/sync_entra.html", ctx)
    add_never_cache_headers(response)
    return response


@require_http_methods(["GET", "POST"])
@administrator_required
def credentials_rotate(request: HttpRequest) -> HttpResponse:
    """ "New client secret" after an explicit confirmation: the Client Identifier stays, the
    old secret and its tokens stop working at once."""
    sync_settings = selectors.sync_settings_find(organization=request.organization)
    if sync_settings is None or sync_settings.oauth_application_id is None:
        messages.info(request, _("Complete Set up in Beem and click Save and Activate first."))
        return redirect("directory_sync:sync_settings_form")
    issued_at = _iso(sync_settings.credentials_created_at) or ""
    form = NewSecretForm(
        request.POST if request.method == "POST" else None,
        initial={"credentials_issued_at": issued_at},
    )
    if request.method == "POST" and form.is_valid():
        posted = request.POST.get("credentials_issued_at")
        if posted is not None and posted != issued_at:
            messages.info(
                request,
                _(
                    "This client secret was already replaced, so nothing was changed. Use the "
                    "secret shown when it was created; if you did not copy it, create a new one."
                ),
            )
            return redirect("directory_sync:sync_entra")
        issued = sync_services.credentials_issue(
            organization=request.organization, **_actor_kwargs(request)
        )
        messages.success(
            request,
            _(
                "A new client secret was created; the Client Identifier is unchanged. Paste the "
                "new secret into Entra ID now: it is shown only on this page."
            ),
        )
        return _entra_page(request, issued=issued)
    return render(
        request,
        "directory_sync/credentials_rotate.html",
        _context(request, "entra", form=form, client_id=sync_settings.oauth_application.client_id),
    )


# --- Stop and reactivate -------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@administrator_required
def sync_stop(request: HttpRequest) -> HttpResponse:
    ctx = _context(request, "status")
    if ctx["state"] in (selectors.SyncState.NOT_CONFIGURED, selectors.SyncState.STOPPED):
        messages.info(request, _("Sync with Entra ID is not active."))
        return redirect("directory_sync:sync_status")
    form = ConfirmForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        sync_services.sync_stop(organization=request.organization, **_actor_kwargs(request))
        messages.success(
            request,
            okta_views.stopped_message(ctx["sync_settings"]) or _("Sync with Entra ID is stopped."),
        )
        return redirect("directory_sync:sync_status")
    ctx["form"] = form
    return render(request, "directory_sync/sync_stop.html", ctx)


@require_http_methods(["GET", "POST"])
@administrator_required
def sync_reactivate(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    ctx = _live_context(request, "status")
    if request.method == "POST":
        if ctx["state"] != selectors.SyncState.STOPPED:
            return redirect("directory_sync:sync_reactivate")
        form = ConfirmForm(request.POST)
        if form.is_valid():
            issued = sync_services.sync_activate(
                organization=organization, **_actor_kwargs(request)
            )
            messages.success(
                request,
                okta_views.reactivated_message(ctx["sync_settings"])
                or _(
                    "Sync with Entra ID is active again. Run Test Connection in Entra ID; "
                    "this page shows when it arrives."
                ),
            )
            if issued is not None:
                # Its credentials were gone (deleted by hand): the new ones are shown now.
                return _entra_page(request, issued=issued)
            return redirect("directory_sync:sync_reactivate")
    else:
        form = ConfirmForm()
    changes = selectors.changes_while_stopped(
        organization=organization, sync_settings=ctx["sync_settings"]
    )
    ctx.update(
        form=form,
        changes=changes,
        change_entries=sentences.with_sentences(changes.audit_entries),
    )
    return render(request, "directory_sync/sync_reactivate.html", ctx)


# --- Runs ----------------------------------------------------------------------------------


@require_GET
@administrator_required
def run_list(request: HttpRequest) -> HttpResponse:
    runs = selectors.run_list(organization=request.organization)
    ctx = _context(request, "runs", page=_page(request, runs, RUNS_PER_PAGE))
    return render(request, "directory_sync/run_list.html", ctx)


@require_GET
@administrator_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        run = selectors.run_get(organization=request.organization, pk=pk)
    except ProvisioningRun.DoesNotExist:
        raise Http404
    filters = EventFilterForm(request.GET or None)
    data = filters.cleaned_data if filters.is_valid() else {}
    events = selectors.run_event_list(
        run=run,
        status=data.get("status", ""),
        outcome=data.get("outcome", ""),
        text=data.get("q", ""),
    )
    query = request.GET.copy()
    query.pop("page", None)
    request_query = request.GET.copy()
    request_query.pop("rpage", None)
    refusal_query = request.GET.copy()
    refusal_query.pop("fpage", None)
    events_page = _page(request, events, EVENTS_PER_PAGE)
    events_page.object_list = list(events_page.object_list)
    for event in events_page.object_list:
        event.sentence = sentences.event_sentence(event)
    ctx = _context(
        request,
        "runs",
        run=run,
        counts=selectors.run_event_counts(run=run),
        summary=run_summary(run),
        filters=filters,
        events=events_page,
        requests=_page(request, selectors.run_request_list(run=run), REQUESTS_PER_PAGE, "rpage"),
        refusals=_page(request, selectors.run_refusal_list(run=run), EVENTS_PER_PAGE, "fpage"),
        query=query.urlencode(),
        request_query=request_query.urlencode(),
        refusal_query=refusal_query.urlencode(),
    )
    return render(request, "directory_sync/run_detail.html", ctx)


# --- Audit log -----------------------------------------------------------------------------


@require_GET
@administrator_required
def audit_list(request: HttpRequest) -> HttpResponse:
    entries = selectors.audit_entry_list(organization=request.organization)
    page = _page(request, entries, AUDIT_PER_PAGE)
    page.object_list = sentences.with_sentences(page.object_list)
    ctx = _context(request, "audit", page=page)
    return render(request, "directory_sync/audit_list.html", ctx)
