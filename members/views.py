"""The admin suite's members pages. HTTP only: every read is a selector, every write a service,
and every query is scoped to ``request.organization`` (set by ``administrator_required``)."""

import base64
import binascii
import json
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from . import selectors, services
from .directory import (
    DirectorySyncStatus,
    directory_member_attributes,
    directory_member_notes,
    directory_sync_status,
)
from .display import department_path_label
from .forms import (
    DepartmentForm,
    MemberCreateForm,
    MemberDeleteForm,
    MemberForm,
    MemberSearchForm,
    ResourceReassignForm,
)
from .models import Department, Group, Member, Resource
from .permissions import administrator_required

MEMBERS_PER_PAGE = 50
ROWS_PER_PAGE = 50
PICKER_PAGE_SIZE = 20


def _encode_cursor(cursor: tuple[str, int] | None) -> str:
    if cursor is None:
        return ""
    raw = json.dumps([cursor[0], cursor[1]], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str | None) -> tuple[str, int] | None:
    """A malformed cursor (hand-edited URL) just means "first page"."""
    if not text:
        return None
    try:
        name, pk = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, TypeError):
        return None
    if not isinstance(name, str) or not isinstance(pk, int):
        return None
    return name, pk


def _locked_fields(member: Member, sync: DirectorySyncStatus) -> frozenset[str]:
    """Directory-owned fields are read-only while sync is active for a synced member."""
    if member.directory_managed and sync.active:
        return services.DIRECTORY_OWNED_FIELDS
    return frozenset()


def _member_or_404(request: HttpRequest, pk: int) -> Member:
    try:
        return selectors.member_get(organization=request.organization, pk=pk)
    except Member.DoesNotExist:
        raise Http404(_("No such member."))


def _departments_shown(member: Member) -> list[dict]:
    """Each department as the profile shows it: its full path, or only its own name when the
    member's departments come from a complete structure string ("current department only")."""
    current_only = member.department_display == Member.DepartmentDisplay.CURRENT_ONLY
    shown = []
    for link in sorted(member.department_links.all(), key=lambda link: not link.is_primary):
        path = selectors.department_path(link.department)
        label = path[-1].name if current_only else department_path_label(d.name for d in path)
        shown.append({"label": label, "is_primary": link.is_primary})
    return shown


@administrator_required
def member_list(request: HttpRequest) -> HttpResponse:
    search_form = MemberSearchForm(request.GET)
    search = search_form.cleaned_data["q"] if search_form.is_valid() else ""
    page = selectors.member_page(
        organization=request.organization,
        search=search,
        after=_decode_cursor(request.GET.get("after")),
        before=_decode_cursor(request.GET.get("before")),
        size=MEMBERS_PER_PAGE,
    )
    return render(
        request,
        "members/member_list.html",
        {
            "search_form": search_form,
            "search": search,
            "members": page.members,
            "next_cursor": _encode_cursor(page.next_after),
            "previous_cursor": _encode_cursor(page.previous_before),
        },
    )


@administrator_required
def member_detail(request: HttpRequest, pk: int) -> HttpResponse:
    member = _member_or_404(request, pk)
    sync = directory_sync_status(organization=request.organization)
    return render(
        request,
        "members/member_detail.html",
        {
            "member": member,
            "departments": _departments_shown(member),
            "groups": [link.group for link in member.group_links.all()],
            "resources": list(member.resources.all()),
            "sync_active": sync.active,
            "locked": bool(_locked_fields(member, sync)),
            "directory_profile": directory_member_attributes(member=member),
            "sync_notes": directory_member_notes(member=member),
        },
    )


@administrator_required
@require_http_methods(["GET", "POST"])
def member_edit(request: HttpRequest, pk: int) -> HttpResponse:
    member = _member_or_404(request, pk)
    sync = directory_sync_status(organization=request.organization)
    locked = _locked_fields(member, sync)
    default_country = sync.default_phone_country
    form = MemberForm(
        request.POST if request.method == "POST" else None,
        member=member,
        locked_fields=locked,
        default_country=default_country,
    )
    if request.method == "POST" and form.is_valid():
        try:
            member, changed = services.member_edit(
                member=member,
                actor=request.user,
                locked_fields=locked,
                default_country=default_country,
                **form.service_arguments(),
            )
        except services.MemberError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            if changed:
                messages.success(request, _("The member was saved."))
            else:
                messages.info(request, _("Nothing changed."))
            return redirect("members:member_detail", pk=member.pk)
    return render(
        request,
        "members/member_form.html",
        {"member": member, "form": form, "locked": bool(locked)},
    )


@administrator_required
@require_http_methods(["GET", "POST"])
def member_create(request: HttpRequest) -> HttpResponse:
    sync = directory_sync_status(organization=request.organization)
    form = MemberCreateForm(
        request.POST if request.method == "POST" else None,
        organization=request.organization,
        identify_by=sync.identify_by,
        default_country=sync.default_phone_country,
    )
    if request.method == "POST" and form.is_valid():
        try:
            member = services.member_create_by_admin(
                organization=request.organization,
                actor=request.user,
                identify_by=sync.identify_by,
                default_country=sync.default_phone_country,
                **form.service_arguments(),
            )
        except services.MemberError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(
                request, _("%(name)s was added to your members.") % {"name": member.full_name}
            )
            return redirect("members:member_detail", pk=member.pk)
    return render(
        request,
        "members/member_create.html",
        {"form": form, "sync_active": sync.active, "identify_by": sync.identify_by},
    )


@administrator_required
@require_http_methods(["GET", "POST"])
def member_delete(request: HttpRequest, pk: int) -> HttpResponse:
    member = _member_or_404(request, pk)
    refusal = services.member_delete_refusal(
        member=member, sync=directory_sync_status(organization=request.organization)
    )
    resources = list(member.resources.all())
    form = MemberDeleteForm(
        request.POST if request.method == "POST" else None, organization=request.organization
    )
    if request.method == "POST" and refusal is None and form.is_valid():
        try:
            deletion = services.member_delete_by_admin(
                member=member, actor=request.user, heir=form.cleaned_data["heir"]
            )
        except services.MemberError as exc:
            form.add_error("heir" if exc.field == "heir" else None, str(exc))
        else:
            if deletion.resources_to_manager:
                messages.success(
                    request,
                    ngettext(
                        "%(name)s was deleted; %(count)d resource now belongs to %(heir)s.",
                        "%(name)s was deleted; %(count)d resources now belong to %(heir)s.",
                        deletion.resources_to_manager,
                    )
                    % {
                        "name": deletion.member_name,
                        "count": deletion.resources_to_manager,
                        "heir": form.cleaned_data["heir"].full_name,
                    },
                )
            else:
                messages.success(
                    request, _("%(name)s was deleted.") % {"name": deletion.member_name}
                )
            return redirect("members:member_list")
    return render(
        request,
        "members/member_confirm_delete.html",
        {"member": member, "form": form, "refusal": refusal, "resources": resources},
        status=409 if request.method == "POST" and refusal else 200,
    )


@administrator_required
def member_search(request: HttpRequest) -> JsonResponse:
    """The member picker's search: a keyset page of members matching ``q`` (name, email,
    mobile or employee number), as JSON. ``value`` is what the picker puts in the text input:
    a unique identifier the form's lookup accepts."""
    search_form = MemberSearchForm(request.GET)
    search = search_form.cleaned_data["q"] if search_form.is_valid() else ""
    page = selectors.member_search_page(
        organization=request.organization,
        search=search,
        after=_decode_cursor(request.GET.get("after")),
        size=PICKER_PAGE_SIZE,
    )
    return JsonResponse(
        {
            "results": [
                {
                    "id": member.pk,
                    "name": member.full_name or str(member),
                    "email": member.email or "",
                    "phone": member.phone or "",
                    "employee_number": member.employee_number,
                    "value": member.email or member.phone,
                }
                for member in page.members
            ],
            "next": _encode_cursor(page.next_after) or None,
            "min_length": selectors.MEMBER_SEARCH_MIN_LENGTH,
        }
    )


def _department_or_404(request: HttpRequest, pk: int) -> Department:
    return get_object_or_404(
        Department.objects.select_related("parent"), organization=request.organization, pk=pk
    )


@administrator_required
@require_http_methods(["GET", "POST"])
def department_list(request: HttpRequest) -> HttpResponse:
    """The department tree, with a form for a new department (posted here)."""
    form = DepartmentForm(
        request.POST if request.method == "POST" else None, organization=request.organization
    )
    if request.method == "POST" and form.is_valid():
        try:
            department = services.department_create(
                organization=request.organization,
                name=form.cleaned_data["name"],
                parent=form.cleaned_data["parent"],
                actor=request.user,
            )
        except services.MemberError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(
                request, _("Department %(name)s was created.") % {"name": department.name}
            )
            return redirect("members:department_list")
    sync = directory_sync_status(organization=request.organization)
    tree = selectors.department_tree(organization=request.organization)
    return render(
        request,
        "members/department_list.html",
        {
            "tree": tree,
            "form": form,
            "sync_active": sync.active,
            "directory_departments": any(d.directory_managed for d, _depth in tree),
        },
    )


@administrator_required
@require_http_methods(["GET", "POST"])
def department_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Rename and/or move a department; what the active sync owns is read-only, with why."""
    department = _department_or_404(request, pk)
    sync = directory_sync_status(organization=request.organization)
    name_refusal = services.department_change_refusal(
        department=department, sync=sync, rename=True, move=False
    )
    move_refusal = services.department_change_refusal(
        department=department, sync=sync, rename=False, move=True
    )
    form = DepartmentForm(
        request.POST if request.method == "POST" else None,
        organization=request.organization,
        department=department,
        name_locked=bool(name_refusal),
        parent_locked=bool(move_refusal),
    )
    if request.method == "POST" and form.is_valid():
        try:
            changed = services.department_change(
                department=department,
                name=form.cleaned_data["name"],
                parent=form.cleaned_data["parent"],
                actor=request.user,
            )
        except services.MemberError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            if changed:
                messages.success(request, _("The department was saved."))
            else:
                messages.info(request, _("Nothing changed."))
            return redirect("members:department_list")
    return render(
        request,
        "members/department_form.html",
        {
            "department": department,
            "form": form,
            "refusals": [r for r in dict.fromkeys((name_refusal, move_refusal)) if r],
        },
    )


@administrator_required
def group_list(request: HttpRequest) -> HttpResponse:
    paginator = Paginator(selectors.group_list(organization=request.organization), ROWS_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "members/group_list.html", {"page": page})


@administrator_required
def group_detail(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(Group, organization=request.organization, pk=pk)
    paginator = Paginator(selectors.group_member_list(group=group), ROWS_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "members/group_detail.html", {"group": group, "page": page})


@administrator_required
def resource_list(request: HttpRequest) -> HttpResponse:
    paginator = Paginator(selectors.resource_list(organization=request.organization), ROWS_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "members/resource_list.html", {"page": page})


@administrator_required
def resource_unassigned_list(request: HttpRequest) -> HttpResponse:
    paginator = Paginator(
        selectors.resource_unassigned_list(organization=request.organization), ROWS_PER_PAGE
    )
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "members/resource_unassigned_list.html", {"page": page})


@administrator_required
@require_POST
def resource_reassign(request: HttpRequest, pk: int) -> HttpResponse:
    resource = get_object_or_404(Resource, organization=request.organization, pk=pk)
    form = ResourceReassignForm(request.POST, organization=request.organization)
    if form.is_valid():
        try:
            services.resource_reassign(
                resource=resource, owner=form.cleaned_data["owner"], actor=request.user
            )
        except services.MemberError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                _("%(resource)s now belongs to %(owner)s.")
                % {"resource": resource.name, "owner": form.cleaned_data["owner"]},
            )
    else:
        for error in form.errors.get("owner", []):
            messages.error(request, f"{resource.name}: {error}")
    # The review page of the sync and the member page reuse this form and come back to
    # themselves.
    back = request.POST.get("next", "")
    if not (
        back
        and url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        back = reverse("members:resource_unassigned_list")
    if form.errors:
        # The page shows the text as typed again in this resource's owner input.
        back = _with_query(back, reassign=resource.pk, owner=request.POST.get("owner", ""))
    return redirect(back)


def _with_query(url: str, **params) -> str:
    """``url`` with ``params`` added to its query string (replacing same-named ones)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))
