"""The Review tab of "Sync with Entra ID": department holds, possible duplicate members and
unassigned resources, with a confirmation step before a decision that deletes a member.

Views do HTTP only (see ``views.py``); every item is read within ``request.organization``.
"""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from members.display import department_labels
from members.models import Department
from members.permissions import administrator_required

from . import review as review_services
from . import selectors
from .forms import DepartmentChoiceForm, DuplicateResolveForm
from .models import ReviewItem
from .views import _context


@require_GET
@administrator_required
def review_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    items = list(selectors.review_item_list(organization=organization))
    candidates = {
        item.pk: list(item.candidates.all())
        for item in items
        if item.kind == ReviewItem.Kind.DUPLICATE_DEPARTMENT
    }
    chosen = [i.chosen_department for i in items if i.chosen_department_id]
    labels = department_labels([d for ds in candidates.values() for d in ds] + chosen)
    for item in items:
        if item.kind == ReviewItem.Kind.DUPLICATE_DEPARTMENT:
            item.choices = [(d.pk, labels[d.pk]) for d in candidates[item.pk]]
            item.chosen_label = labels.get(item.chosen_department_id, "")
            item.form_prefix = f"item{item.pk}"
        else:
            item.form = DuplicateResolveForm(prefix=f"item{item.pk}")
    resources = list(selectors.unassigned_resource_list(organization=organization))
    ctx = _context(
        request,
        "review",
        department_items=[i for i in items if i.kind == ReviewItem.Kind.DUPLICATE_DEPARTMENT],
        duplicate_items=[i for i in items if i.kind == ReviewItem.Kind.POSSIBLE_DUPLICATE],
        resources=resources,
    )
    return render(request, "directory_sync/review_list.html", ctx)


def _review_item_or_404(request: HttpRequest, pk: int, kind: str) -> ReviewItem:
    try:
        item = selectors.review_item_get(organization=request.organization, pk=pk)
    except ReviewItem.DoesNotExist:
        raise Http404
    if item.kind != kind:
        raise Http404
    return item


def _member_name(item: ReviewItem) -> str:
    if item.member is not None:
        return item.member.full_name or str(item.member)
    if item.record is not None:
        return item.record.user_name or item.record.display_name
    return item.directory_value


@require_POST
@administrator_required
def review_department_choose(request: HttpRequest, pk: int) -> HttpResponse:
    item = _review_item_or_404(request, pk, ReviewItem.Kind.DUPLICATE_DEPARTMENT)
    form = DepartmentChoiceForm(request.POST, candidates=item.candidates.all(), prefix=f"item{pk}")
    if form.is_valid():
        department: Department = form.cleaned_data["department"]
        try:
            review_services.review_department_choose(
                item=item, department=department, actor=request.user
            )
        except review_services.ReviewError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                _("%(member)s will be placed in %(department)s.")
                % {
                    "member": _member_name(item),
                    "department": department_labels([department])[department.pk],
                },
            )
    else:
        messages.error(request, _("Pick one of the matching departments."))
    return redirect("directory_sync:review_list")


@require_http_methods(["GET", "POST"])
@administrator_required
def review_duplicate_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    """Keep both at once; Link and Merge delete a member, so they first answer a confirmation
    page saying who is removed and where their resources go (``?action=`` on a GET, or the
    decision posted without ``confirmed``), and act on the confirmed post."""
    item = _review_item_or_404(request, pk, ReviewItem.Kind.POSSIBLE_DUPLICATE)
    if request.method == "GET":
        form = DuplicateResolveForm(
            {f"item{pk}-action": request.GET.get("action", "")}, prefix=f"item{pk}"
        )
    else:
        form = DuplicateResolveForm(request.POST, prefix=f"item{pk}")
    if not form.is_valid():
        messages.error(request, _("Choose link, keep both or merge."))
        return redirect("directory_sync:review_list")
    action = form.cleaned_data["action"]
    if action in DuplicateResolveForm.CONFIRMED and (
        request.method == "GET" or not form.cleaned_data["confirmed"]
    ):
        return _duplicate_confirmation(request, item, action)
    if request.method == "GET":
        return redirect("directory_sync:review_list")
    try:
        done = review_services.review_duplicate_resolve(
            item=item, action=action, actor=request.user
        )
    except review_services.ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _resolution_message(done))
    return redirect("directory_sync:review_list")


def _duplicate_confirmation(request: HttpRequest, item: ReviewItem, action: str) -> HttpResponse:
    try:
        preview = review_services.review_duplicate_preview(item=item, action=action)
    except review_services.ReviewError as exc:
        messages.error(request, str(exc))
        return redirect("directory_sync:review_list")
    ctx = _context(request, "review", item=item, preview=preview, prefix=f"item{item.pk}")
    return render(request, "directory_sync/review_duplicate_confirm.html", ctx)


def _resolution_message(done: review_services.DuplicateResolution) -> str:
    if done.action == "keep_both":
        return _("Both members are kept; this pair will not be flagged again.")
    values = {
        "kept": done.kept_name,
        "removed": done.removed_name,
        "count": done.resources_moved,
    }
    if done.action == "link":
        return (
            ngettext(
                "Linked: %(kept)s is now managed by Entra ID. The duplicate member %(removed)s was "
                "deleted and its %(count)s resource moved to %(kept)s.",
                "Linked: %(kept)s is now managed by Entra ID. The duplicate member %(removed)s was "
                "deleted and its %(count)s resources moved to %(kept)s.",
                done.resources_moved,
            )
            % values
        )
    return (
        ngettext(
            "Merged: %(removed)s was folded into %(kept)s and deleted; %(count)s resource moved "
            "to %(kept)s.",
            "Merged: %(removed)s was folded into %(kept)s and deleted; %(count)s resources moved "
            "to %(kept)s.",
            done.resources_moved,
        )
        % values
    )
