"""Seed an organization with N directory users, their members and a few groups, fast.

Rows go in with PostgreSQL ``COPY`` (about 1M users in a couple of minutes on 2 cores), not
through HTTP or the ORM's per-row saves. Every ``DirectoryRecord`` follows the shared data
contract: the document is a canonical SCIM User without ``id``/``meta``, the mirror columns
equal the document, and each record is linked to its member with ``applied_version ==
version`` (as if the sync engine had already applied it). Columns this module does not set
are filled from the model's field defaults, so new columns added by others keep working.

Must run inside a configured Django (``bench/run.py`` does this) against PostgreSQL.
"""

import json
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection, models
from django.utils import timezone

USER_SCHEMAS = [
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
]
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMAS = ["urn:ietf:params:scim:schemas:core:2.0:Group"]
DEPARTMENTS = 50
GROUPS = 20
GROUP_SIZE = 100
SAMPLE = 20_000


@dataclass
class SeededOrg:
    organization_id: int
    users: int
    client_id: str
    client_secret: str
    samples: dict[str, list[str]] = field(default_factory=dict)


def _copy(model: type[models.Model], given: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY ``rows`` (values for the ``given`` fields) into ``model``'s table.

    Other concrete fields get their default: constant defaults once, callable ones per row,
    ``auto_now``/``auto_now_add`` the current time.
    """
    now = timezone.now()
    fields = [f for f in model._meta.concrete_fields]
    by_name = {f.name: f for f in fields} | {f.attname: f for f in fields}
    given_fields = [by_name[name] for name in given]
    rest = [f for f in fields if f not in given_fields and not f.primary_key]
    constant: list = []
    per_row: list[tuple[int, Callable]] = []
    for f in rest:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            constant.append(now)
        elif f.has_default() and callable(f.default):
            per_row.append((len(constant), f.default))
            constant.append(None)
        elif f.has_default():
            value = f.get_default()
            constant.append(json.dumps(value) if isinstance(f, models.JSONField) else value)
        elif f.null:
            constant.append(None)
        elif isinstance(f, models.CharField | models.TextField):
            constant.append("")
        else:
            raise RuntimeError(f"bench seed: no value for {model.__name__}.{f.name}")
    columns = ", ".join(f'"{f.column}"' for f in [*given_fields, *rest])
    table = model._meta.db_table
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                tail = list(constant)
                for index, make in per_row:
                    value = make()
                    tail[index] = json.dumps(value) if isinstance(value, dict | list) else value
                copy.write_row([*row, *tail])
                count += 1
    return count


def _next_id(model: type[models.Model]) -> int:
    return (model.objects.aggregate(m=models.Max("id"))["m"] or 0) + 1


def _reset_sequence(model: type[models.Model]) -> None:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
            f'(SELECT COALESCE(MAX(id), 1) FROM "{table}"))'
        )


def user_document(i: int, *, external_id: str, manager_scim_id: str | None) -> dict:
    """The canonical SCIM User for seeded user ``i`` (shared data contract)."""
    user_name = f"user{i}@bench.example.com"
    document = {
        "schemas": USER_SCHEMAS,
        "userName": user_name,
        "externalId": external_id,
        "active": True,
        "displayName": f"User {i}",
        "name": {"givenName": "User", "familyName": str(i)},
        "emails": [{"type": "work", "value": user_name, "primary": True}],
        "phoneNumbers": [{"type": "mobile", "value": f"+96650{i:07d}"}],
        "title": "Engineer",
        "addresses": [{"type": "work", "country": "SA"}],
        ENTERPRISE: {"employeeNumber": f"E{i}", "department": f"Dept {i % DEPARTMENTS}"},
    }
    if manager_scim_id:
        document[ENTERPRISE]["manager"] = {"value": manager_scim_id}
    return document


def organization_prepare(*, slug: str, name: str) -> tuple[int, str, str]:
    """Create the organization with an active sync and fresh OAuth client credentials."""
    from directory_sync import services as sync_services
    from members import services as member_services

    organization = member_services.organization_get_or_create(slug=slug, name=name)
    sync_services.sync_settings_get(organization=organization)
    issued = sync_services.credentials_issue(organization=organization, actor_label="bench")
    sync_services.sync_activate(organization=organization, actor_label="bench")
    return organization.pk, issued.client_id, issued.client_secret


def users_seed(*, organization_id: int, users: int, seed: int = 6) -> dict[str, list[str]]:
    """Insert ``users`` members + linked directory records + departments + groups.

    Returns samples for the load generator: user ids, userNames, externalIds, group ids.
    """
    from directory_sync.models import DirectoryMembership, DirectoryRecord
    from members.models import Department, DepartmentMembership, Group, GroupMembership, Member

    rng = random.Random(seed)
    departments = Department.objects.bulk_create(
        [Department(organization_id=organization_id, name=f"Dept {d}") for d in range(DEPARTMENTS)]
    )
    dept_ids = [d.pk for d in departments]
    scim_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(users)]
    external_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(users)]
    m0 = _next_id(Member)
    r0 = _next_id(DirectoryRecord)

    def manager_of(i: int) -> int | None:
        # A ten-wide management tree: user i reports to user i // 10 (user 0 to nobody).
        return i // 10 if i > 0 else None

    _copy(
        Member,
        [
            "id",
            "organization_id",
            "display_name",
            "given_name",
            "family_name",
            "phone",
            "email",
            "job_title",
            "country",
            "employee_number",
            "manager_id",
            "directory_managed",
        ],
        (
            (
                m0 + i,
                organization_id,
                f"User {i}",
                "User",
                str(i),
                f"+96650{i:07d}",
                f"user{i}@bench.example.com",
                "Engineer",
                "SA",
                f"E{i}",
                None if manager_of(i) is None else m0 + manager_of(i),
                True,
            )
            for i in range(users)
        ),
    )
    _reset_sequence(Member)
    _copy(
        DepartmentMembership,
        ["member_id", "department_id", "is_primary"],
        ((m0 + i, dept_ids[i % DEPARTMENTS], True) for i in range(users)),
    )
    _reset_sequence(DepartmentMembership)

    def record_rows():
        for i in range(users):
            manager = manager_of(i)
            manager_scim = scim_ids[manager] if manager is not None else None
            user_name = f"user{i}@bench.example.com"
            document = user_document(i, external_id=external_ids[i], manager_scim_id=manager_scim)
            yield (
                r0 + i,
                organization_id,
                "User",
                scim_ids[i],
                external_ids[i],
                user_name,
                user_name.casefold(),
                f"User {i}",
                user_name.lower(),
                manager_scim,
                True,
                json.dumps(document, separators=(",", ":")),
                1,
                m0 + i,
                1,
            )

    _copy(
        DirectoryRecord,
        [
            "id",
            "organization_id",
            "resource_type",
            "scim_id",
            "external_id",
            "user_name",
            "user_name_key",
            "display_name",
            "work_email",
            "manager_scim_id",
            "active",
            "document",
            "version",
            "member_id",
            "applied_version",
        ],
        record_rows(),
    )
    _reset_sequence(DirectoryRecord)

    # Groups: GROUPS directory groups of GROUP_SIZE random users each, mirrored in members.
    group_ids: list[str] = []
    size = min(GROUP_SIZE, users)
    for g in range(GROUPS):
        group = Group.objects.create(
            organization_id=organization_id, name=f"Group {g}", directory_managed=True
        )
        external_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        record = DirectoryRecord.objects.create(
            organization_id=organization_id,
            resource_type="Group",
            external_id=external_id,
            display_name=group.name,
            document={
                "schemas": GROUP_SCHEMAS,
                "displayName": group.name,
                "externalId": external_id,
            },
            group=group,
            applied_version=1,
        )
        group_ids.append(str(record.scim_id))
        picks = rng.sample(range(users), size)
        DirectoryMembership.objects.bulk_create(
            [DirectoryMembership(group_record=record, user_record_id=r0 + i) for i in picks]
        )
        GroupMembership.objects.bulk_create(
            [GroupMembership(group=group, member_id=m0 + i) for i in picks]
        )

    # The steady state of a deployment after a bulk load: beat's fold_record_counts has folded
    # the per-insert count rows the triggers appended, and autovacuum has cleaned up after it
    # (right after the COPY, a list would first wade through N dead count rows).
    from directory_sync.models import DirectoryRecordCount
    from directory_sync.store.counts import counts_compact_all

    counts_compact_all()
    with connection.cursor() as cursor:
        for model in (Member, DirectoryRecord, DepartmentMembership, DirectoryRecordCount):
            cursor.execute(f'VACUUM ANALYZE "{model._meta.db_table}"')

    picks = rng.sample(range(users), min(SAMPLE, users))
    # PATCH (which disables 1 in 10) gets its own half of the sample, so lookups and GETs
    # read users whose members still exist.
    half = len(picks) // 2
    patched, read = picks[:half] or picks, picks[half:]
    return {
        "user_ids.txt": [scim_ids[i] for i in read],
        "user_names.txt": [f"user{i}@bench.example.com" for i in read],
        "external_ids.txt": [external_ids[i] for i in read],
        "patch_ids.txt": [scim_ids[i] for i in patched],
        "group_ids.txt": group_ids,
    }


def samples_write(directory: Path, samples: dict[str, list[str]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, values in samples.items():
        (directory / name).write_text("\n".join(values) + "\n")
