"""Creating and editing one member."""

from collections.abc import Sequence

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ..models import Department, DepartmentMembership, Member, Organization
from .audit import audit_record
from .departments import member_departments_set
from .errors import MemberError
from .member_fields import member_fields_check_unique, member_fields_normalise


def member_create(
    *, organization: Organization, default_country: str | None = None, **fields
) -> Member:
    """Create a member; phone is normalised to E.164, email lower-cased, both unique."""
    clean = member_fields_normalise(fields, default_country=default_country)
    if not clean.get("phone") and not clean.get("email"):
        raise MemberError("A member needs a mobile number or an email address.", field="phone")
    member_fields_check_unique(organization=organization, fields=clean, exclude_pk=None)
    try:
        with transaction.atomic():
            return Member.objects.create(organization=organization, **clean)
    except IntegrityError:
        # A concurrent writer took the phone or email between the check and the insert.
        member_fields_check_unique(organization=organization, fields=clean, exclude_pk=None)
        raise


def _current_value(member: Member, key: str):
    return member.manager_id if key == "manager" else getattr(member, key)


def _comparable(key: str, value):
    if key == "manager":
        return value.pk if value is not None else None
    return value


def member_update(
    *,
    member: Member,
    default_country: str | None = None,
    check_unique: bool = True,
    **fields,
) -> tuple[Member, list[str]]:
    """Update the given fields; returns the member and the names of fields that changed.

    ``check_unique=False``: the caller already checked phone and email against the other
    members (the sync engine's batches); the unique constraints still guard the row.
    """
    clean = member_fields_normalise(fields, default_country=default_country)
    changed = [k for k, v in clean.items() if _current_value(member, k) != _comparable(k, v)]
    if not changed:
        return member, []
    if check_unique:
        member_fields_check_unique(
            organization=member.organization,
            fields={k: clean[k] for k in changed},
            exclude_pk=member.pk,
        )
    for key in changed:
        setattr(member, key, clean[key])
    if not member.phone and not member.email:
        raise MemberError("A member needs a mobile number or an email address.", field="phone")
    with transaction.atomic():
        member.save(update_fields=[*changed, "updated_at"])
    return member, changed


def member_edit(
    *,
    member: Member,
    actor=None,
    locked_fields: frozenset[str] | set[str] = frozenset(),
    default_country: str | None = None,
    departments: Sequence[Department] | None = None,
    **fields,
) -> tuple[Member, list[str]]:
    """An administrator's edit of a member, audited as ``member.edited``.

    ``locked_fields`` are refused outright (the caller computes them, e.g. the directory-owned
    fields while sync is active): a disabled form input is not a security boundary.
    ``departments`` (when given) become the member's departments; the current primary stays
    primary when kept. Returns the member and the names of the fields that changed.
    """
    given = set(fields) | ({"departments"} if departments is not None else set())
    refused = sorted(given & set(locked_fields))
    if refused:
        raise MemberError(
            f"These fields are managed by directory sync: {', '.join(refused)}.",
            field=refused[0],
        )
    if departments is not None:
        for department in departments:
            if department.organization_id != member.organization_id:
                raise MemberError(
                    "The department belongs to another organization.", field="departments"
                )
    manager = fields.get("manager")
    if manager is not None:
        if manager.organization_id != member.organization_id:
            raise MemberError("The manager belongs to another organization.", field="manager")
        if manager.pk == member.pk:
            raise MemberError("A member cannot be their own manager.", field="manager")
    with transaction.atomic():
        member, changed = member_update(member=member, default_country=default_country, **fields)
        if departments is not None:
            current_primary = (
                DepartmentMembership.objects.filter(member=member, is_primary=True)
                .values_list("department_id", flat=True)
                .first()
            )
            primary = next((d for d in departments if d.pk == current_primary), None)
            if member_departments_set(member=member, departments=departments, primary=primary):
                changed.append("departments")
        if changed:
            audit_record(
                organization=member.organization,
                action="member.edited",
                actor=actor,
                detail={"member_id": member.pk, "member": member.full_name, "fields": changed},
            )
    return member, changed


def member_create_by_admin(
    *,
    organization: Organization,
    actor=None,
    identify_by: str | None = None,
    default_country: str | None = None,
    departments: Sequence[Department] = (),
    manager: Member | None = None,
    **fields,
) -> Member:
    """An administrator's new member, audited as ``member.created``.

    ``identify_by`` (``"phone"`` or ``"email"``, from the organization's directory sync) is
    the identifier the member must have so the sync can find them; without a sync either one
    does. The member is Beem's (not directory-managed) until the sync links them.
    """
    if identify_by == "phone" and not (fields.get("phone") or "").strip():
        raise MemberError(
            _("Directory sync identifies members by mobile number: enter one."), field="phone"
        )
    if identify_by == "email" and not (fields.get("email") or "").strip():
        raise MemberError(
            _("Directory sync identifies members by email address: enter one."), field="email"
        )
    if not (fields.get("phone") or "").strip() and not (fields.get("email") or "").strip():
        raise MemberError(_("A member needs a mobile number or an email address."), field="phone")
    for department in departments:
        if department.organization_id != organization.pk:
            raise MemberError(
                _("The department belongs to another organization."), field="departments"
            )
    if manager is not None and manager.organization_id != organization.pk:
        raise MemberError(_("The manager belongs to another organization."), field="manager")
    with transaction.atomic():
        member = member_create(
            organization=organization, default_country=default_country, manager=manager, **fields
        )
        if departments:
            member_departments_set(member=member, departments=departments)
        audit_record(
            organization=organization,
            action="member.created",
            actor=actor,
            detail={"member_id": member.pk, "member": member.full_name or str(member)},
        )
    return member
