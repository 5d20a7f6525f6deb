"""Reconcile: compare every directory record with its member or group, and repair what a
re-applied change event can repair (``manage.py directory_sync reconcile``).

``reconcile_differences`` only reads; ``reconcile_fix`` and ``record_counts_fix`` write and own
their transactions like every service.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from django.db import transaction

from members.models import Group, Member, Organization
from members.phones import phone_or_none
from members.services import audit_record

from .engine import record_member_differences
from .models import ChangeEvent, DirectoryRecord, SyncSettings
from .outbox import change_event_append
from .scim.documents import mobile_number, work_email
from .store import counts


class Kind:
    MISSING_MEMBER = "missing_member"
    MISSING_GROUP = "missing_group"
    STALE_FIELD = "stale_field"
    DUPLICATE = "duplicate"
    ORPHAN = "orphan"
    # The list index (DirectoryRecordCount: totalResults, startIndex) disagrees with the records.
    RECORD_COUNT = "record_count"


# Kinds whose record a re-applied change event can repair. Duplicates need a person's
# judgement (review items / merge), orphans have no record to apply.
FIXABLE = {Kind.MISSING_MEMBER, Kind.MISSING_GROUP, Kind.STALE_FIELD}


@dataclass(frozen=True)
class Difference:
    """One way a directory record and the Beem side disagree."""

    organization_id: int
    organization_slug: str
    kind: str
    resource_type: str
    # Our SCIM id of the record ("" for an orphan, which has none).
    scim_id: str
    # userName or group displayName of the record; the member's or group's name for orphans.
    label: str
    member_id: int | None
    group_id: int | None
    detail: str
    # A change event for this record is already waiting: the job may still fix it.
    pending_event: bool = False
    record_id: int | None = field(default=None, compare=False)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("record_id")
        return data


def _person_keys(document: dict, *, default_country: str | None) -> list[tuple[str, str]]:
    keys = []
    email = work_email(document)
    if email:
        keys.append(("email", email))
    phone = phone_or_none(mobile_number(document), default_country=default_country)
    if phone:
        keys.append(("phone", phone))
    return keys


def reconcile_differences(*, organization: Organization | None = None) -> list[Difference]:
    """Compare every directory record with its member or group. Read-only.

    Reports: a live record without its member/group (``missing_*``); a member or group that
    does not match its record, or a directory-deleted/inactive user whose member still exists
    (``stale_field``); another member or directory user with the same email or mobile
    (``duplicate``); a directory-managed member or group with no record (``orphan``); SCIM
    list counts that disagree with the records (``record_count``).
    """
    organizations = (
        [organization] if organization is not None else Organization.objects.order_by("id")
    )
    out: list[Difference] = []
    for org in organizations:
        out.extend(_reconcile_organization(org))
        out.extend(_count_differences(org))
    return out


def _count_differences(organization: Organization) -> list[Difference]:
    return [
        Difference(
            organization_id=organization.pk,
            organization_slug=organization.slug,
            kind=Kind.RECORD_COUNT,
            resource_type=found.resource_type,
            scim_id="",
            label="",
            member_id=None,
            group_id=None,
            detail=f"list counts say {found.counted} live records, there are {found.live} "
            f"({found.blocks} block(s) of ids differ)",
        )
        for found in counts.counts_differences(organization_id=organization.pk)
    ]


def record_counts_fix(*, differences: Iterable[Difference]) -> int:
    """Rebuild the list counts behind ``record_count`` differences; returns how many."""
    pairs = sorted(
        {(d.organization_id, d.resource_type) for d in differences if d.kind == Kind.RECORD_COUNT}
    )
    for organization_id, resource_type in pairs:
        counts.counts_rebuild(organization_id=organization_id, resource_type=resource_type)
    return len(pairs)


def _reconcile_organization(organization: Organization) -> list[Difference]:
    sync = SyncSettings.objects.filter(organization=organization).first()
    default_country = sync.default_phone_country if sync else None
    records = list(
        DirectoryRecord.objects.filter(organization=organization)
        .select_related("member", "group")
        .order_by("resource_type", "id")
    )
    pending_record_ids = set(
        ChangeEvent.objects.filter(
            organization=organization, status=ChangeEvent.Status.PENDING, record__isnull=False
        ).values_list("record_id", flat=True)
    )
    out: list[Difference] = []

    def add(kind: str, record: DirectoryRecord | None, detail: str, **extra) -> None:
        if record is not None:
            extra.setdefault("resource_type", record.resource_type)
            extra.setdefault("scim_id", str(record.scim_id))
            extra.setdefault("label", record.user_name or record.display_name or "")
            extra.setdefault("member_id", record.member_id)
            extra.setdefault("group_id", record.group_id)
            extra.setdefault("pending_event", record.pk in pending_record_ids)
            extra.setdefault("record_id", record.pk)
        out.append(
            Difference(
                organization_id=organization.pk,
                organization_slug=organization.slug,
                kind=kind,
                detail=detail,
                **extra,
            )
        )

    users = [r for r in records if r.resource_type == DirectoryRecord.ResourceType.USER]
    groups = [r for r in records if r.resource_type == DirectoryRecord.ResourceType.GROUP]

    for record in users:
        if record.deleted_at is not None:
            if record.member_id:
                add(Kind.STALE_FIELD, record, "deleted in the directory; the member still exists")
            continue
        if not record.active:
            if record.member_id:
                add(Kind.STALE_FIELD, record, "inactive in the directory; the member still exists")
            continue
        if record.member is None:
            add(Kind.MISSING_MEMBER, record, "active directory user has no member")
            continue
        differences = record_member_differences(record)
        for difference in differences:
            add(Kind.STALE_FIELD, record, str(difference))

    _user_duplicates(organization, users, default_country=default_country, add=add)

    for record in groups:
        if record.deleted_at is not None:
            if record.group_id:
                add(Kind.STALE_FIELD, record, "deleted in the directory; the group still exists")
            continue
        if record.group is None:
            add(Kind.MISSING_GROUP, record, "directory group has no Beem group")
            continue
        for difference in record_member_differences(record):
            add(Kind.STALE_FIELD, record, str(difference))

    for member in Member.objects.filter(
        organization=organization, directory_managed=True, directory_record__isnull=True
    ).order_by("id"):
        add(
            Kind.ORPHAN,
            None,
            "directory-managed member has no directory record",
            resource_type=DirectoryRecord.ResourceType.USER,
            scim_id="",
            label=member.full_name or str(member),
            member_id=member.pk,
            group_id=None,
        )
    for group in Group.objects.filter(
        organization=organization, directory_managed=True, directory_record__isnull=True
    ).order_by("id"):
        add(
            Kind.ORPHAN,
            None,
            "directory-managed group has no directory record",
            resource_type=DirectoryRecord.ResourceType.GROUP,
            scim_id="",
            label=group.name,
            member_id=None,
            group_id=group.pk,
        )
    return out


def _user_duplicates(organization, users, *, default_country, add) -> None:
    """Two live directory users with one email/mobile, or a user whose email/mobile belongs
    to a member other than its own (the product doc's phone-vs-email mismatch duplicate)."""
    live = [r for r in users if r.deleted_at is None and r.active]
    members_by_key: dict[tuple[str, str], int] = {}
    for member_id, email, phone in Member.objects.filter(organization=organization).values_list(
        "id", "email", "phone"
    ):
        if email:
            members_by_key[("email", email.lower())] = member_id
        if phone:
            members_by_key[("phone", phone)] = member_id
    records_by_key: dict[tuple[str, str], list[DirectoryRecord]] = defaultdict(list)
    for record in live:
        keys = _person_keys(record.document or {}, default_country=default_country)
        for key in keys:
            records_by_key[key].append(record)
            other = members_by_key.get(key)
            if other is not None and record.member_id and other != record.member_id:
                add(
                    Kind.DUPLICATE,
                    record,
                    f"{key[0]} also belongs to member {other}, not to the linked member",
                )
    for key, sharing in records_by_key.items():
        if len(sharing) > 1:
            for record in sharing:
                others = ", ".join(str(r.scim_id) for r in sharing if r is not record)
                add(Kind.DUPLICATE, record, f"{key[0]} shared with directory user(s) {others}")


def reconcile_fix(*, differences: Iterable[Difference], actor_label: str) -> int:
    """Re-queue the records behind fixable differences; returns how many records.

    Appends one change event per record through the outbox, at the record's current version
    (``version`` is not bumped, so Entra sees no change), and marks that version as not yet
    applied so the job converges the member to the stored document instead of skipping it as
    superseded (design.md §3, jobs converge). Records that already have a pending event are
    skipped; that event will converge them.
    """
    record_ids = sorted(
        {
            d.record_id
            for d in differences
            if d.kind in FIXABLE and d.record_id is not None and not d.pending_event
        }
    )
    requeued = 0
    by_organization: dict[int, int] = defaultdict(int)
    for record_id in record_ids:
        with transaction.atomic():
            record = (
                DirectoryRecord.objects.select_for_update(no_key=True)
                .select_related("organization")
                .filter(pk=record_id)
                .first()
            )
            if record is None:
                continue
            kind = (
                ChangeEvent.Kind.DELETED
                if record.deleted_at is not None
                else (
                    ChangeEvent.Kind.MEMBERS_CHANGED
                    if record.resource_type == DirectoryRecord.ResourceType.GROUP
                    and record.group_id
                    else ChangeEvent.Kind.UPDATED
                )
            )
            # The engine skips an event whose version was already applied; the member drifted
            # since, so mark this version as not applied. The record's own version (its SCIM
            # meta.version) is untouched.
            if record.applied_version >= record.version:
                DirectoryRecord.objects.filter(pk=record.pk).update(
                    applied_version=record.version - 1
                )
            change_event_append(record=record, kind=kind, request_id="reconcile")
        requeued += 1
        by_organization[record.organization_id] += 1
    for organization_id, count in by_organization.items():
        audit_record(
            organization=Organization.objects.get(pk=organization_id),
            action="sync.reconcile_requeued",
            actor_label=actor_label,
            detail={"records": count},
        )
    return requeued
