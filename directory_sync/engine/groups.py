"""Groups: a directory group's Beem group, its name and members."""

from __future__ import annotations

from members import services as member_services
from members.models import Group

from ..models import DirectoryMembership, DirectoryRecord
from ..notes import ngettext_message as ngettext  # the name makemessages extracts
from ..store.records import records_lock_for_share
from .records import record_set
from .results import Notes, Outcome


def group_converge(record: DirectoryRecord) -> tuple[str, Notes]:
    notes = Notes()
    if record.deleted_at is not None:
        if record.group_id is None:
            return Outcome.UNCHANGED, notes
        member_services.group_delete(group=record.group)
        record_set(record, group=None)
        return Outcome.GROUP_DELETED, notes
    name = group_name_clip(str((record.document or {}).get("displayName") or record.display_name))
    group = record.group
    if group is None:
        group = member_services.group_create(
            organization=record.organization, name=name, directory_managed=True
        )
        record_set(record, group=group)
    else:
        member_services.group_rename(group=group, name=name)
    user_record_ids = list(
        DirectoryMembership.objects.filter(group_record=record).values_list(
            "user_record_id", flat=True
        )
    )
    # Wait for user jobs in flight so their new members are seen (module docstring).
    records_lock_for_share(user_record_ids)
    member_ids = DirectoryRecord.objects.filter(
        pk__in=user_record_ids, deleted_at__isnull=True, member__isnull=False
    ).values_list("member_id", flat=True)
    added, removed = member_services.group_members_set(group=group, member_ids=member_ids)
    notes.add(
        ngettext(
            "%(count)s member added, %(removed)s removed.",
            "%(count)s members added, %(removed)s removed.",
            added,
            count=added,
            removed=removed,
        )
    )
    return Outcome.GROUP_SYNCED, notes


def group_name_clip(name: str) -> str:
    return name.strip()[: Group._meta.get_field("name").max_length]
