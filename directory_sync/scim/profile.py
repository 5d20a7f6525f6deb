"""The member's directory profile: what Entra ID sent that Beem keeps but does not apply.

Beem applies names, the work email, the mobile number, title, work country, employee number,
department and manager to the member (``directory_sync.engine``); every other attribute of
the directory record's document (issue 15) is shown read-only on the member's page, labelled
with the SCIM attribute path an administrator sees in Entra ID's attribute mappings.
"""

from members.models import Member

from ..models import DirectoryRecord
from .documents import ENTERPRISE_SCHEMA

# Attribute paths Beem applies to the member, or that identify the record (not shown again).
_APPLIED = frozenset(
    {
        "userName",
        "externalId",
        "active",
        "displayName",
        "title",
        "name.givenName",
        "name.familyName",
        'emails[type eq "work"].value',
        'phoneNumbers[type eq "mobile"].value',
        'addresses[type eq "work"].country',
        "employeeNumber",
        "department",
        "manager.value",
    }
)
_QUALIFIERS = ("type", "primary")


def _rows(prefix: str, value) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        rows = []
        for key, item in value.items():
            rows.extend(_rows(f"{prefix}.{key}" if prefix else key, item))
        return rows
    if isinstance(value, list):
        rows = []
        for entry in value:
            if not isinstance(entry, dict):
                rows.extend(_rows(prefix, entry))
                continue
            qualified = f'{prefix}[type eq "{entry["type"]}"]' if entry.get("type") else prefix
            for key, item in entry.items():
                if key not in _QUALIFIERS:
                    rows.extend(_rows(f"{qualified}.{key}", item))
        return rows
    if isinstance(value, bool):
        value = "true" if value else "false"
    return [(prefix, str(value))]


def directory_profile_extra(member: Member) -> list[tuple[str, str]]:
    """(SCIM attribute path, value) of every kept attribute Beem does not apply, in the
    document's order; empty for a member not linked to a directory user."""
    record = (
        DirectoryRecord.objects.filter(member=member, deleted_at__isnull=True)
        .only("document")
        .first()
    )
    if record is None:
        return []
    rows: list[tuple[str, str]] = []
    for key, value in record.document.items():
        if key == "schemas":
            continue
        rows.extend(_rows("", value) if key == ENTERPRISE_SCHEMA else _rows(key, value))
    return [(path, value) for path, value in rows if path not in _APPLIED]
