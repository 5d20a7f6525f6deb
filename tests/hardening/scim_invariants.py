"""What must hold for every SCIM answer and every stored directory record, whatever came in.

Used by the fuzzer after each request and by the isolation tests. A checker returns a list of
problems (empty: fine) so a failure names everything wrong at once. A write is either a 2xx
that is readable as answered and applied, or a 4xx that changed nothing (issue 12).
"""

import json
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from scim2_models import Context, Email, EnterpriseUser, Group, User

from directory_sync.engine import record_member_differences
from directory_sync.models import ChangeEvent, DirectoryMembership, DirectoryRecord
from members.models import DepartmentMembership, GroupMembership, Member
from members.models import Group as BeemGroup

from .conftest import ENTERPRISE, ERROR_SCHEMA, GROUP_SCHEMA, SCIM_CONTENT_TYPE, USER_SCHEMA

# RFC 7644 §3.12, table 9.
SCIM_TYPES = {
    "invalidFilter",
    "tooMany",
    "uniqueness",
    "mutability",
    "invalidSyntax",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidVers",
    "sensitive",
}


class _KeptEmail(Email):
    # Beem keeps emails as Entra sent them: the work email must be an address (checked below,
    # and refused at the door otherwise), while other emails may be what Microsoft's
    # proxyAddresses mapping sends ("SMTP:sara@contoso.com"), which RFC 7643 only says SHOULD
    # be an address.
    value: str | None = None


class EnterpriseUserModel(User[EnterpriseUser]):
    emails: list[_KeptEmail] | None = None


def response_problems(response, *, not_implemented_ok: bool = False) -> list[str]:
    """A SCIM response: never 5xx; errors carry a SCIM error body with the same status.

    ``not_implemented_ok``: the route is one RFC 7644 lets a service decline with 501 (/Bulk,
    /Me — advertised as unsupported); 501 is then the right answer, not a failure.
    """
    problems = []
    status = response.status_code
    if status >= 500 and not (status == 501 and not_implemented_ok):
        return [f"server error {status}: {response.content[:500]!r}"]
    content_type = response.get("Content-Type", "")
    if status == 204:
        return []
    if not content_type.startswith(SCIM_CONTENT_TYPE):
        problems.append(f"{status} answered with Content-Type {content_type!r}")
    try:
        body = json.loads(response.content)
    except ValueError:
        return [*problems, f"{status} body is not JSON: {response.content[:300]!r}"]
    if status >= 400:
        if not isinstance(body, dict) or ERROR_SCHEMA not in (body.get("schemas") or []):
            problems.append(f"{status} body is not a SCIM error: {body!r:.300}")
            return problems
        if str(body.get("status")) != str(status):
            problems.append(f"error body status {body.get('status')!r} != HTTP {status}")
        if status == 400 and body.get("scimType") not in SCIM_TYPES:
            problems.append(f"400 without a valid scimType: {body.get('scimType')!r}")
        if not isinstance(body.get("detail", ""), str):
            problems.append("error detail is not a string")
    return problems


def _nulls(value, where: str) -> list[str]:
    if value is None:
        return [f"null at {where} (absent attributes must be omitted)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{where}[{i}]")]
    return []


def _expect(doc: dict, key: str, kind, problems: list[str]) -> None:
    if key in doc and not isinstance(doc[key], kind):
        problems.append(f"{key} is {type(doc[key]).__name__}, expected {kind}")


def _list_of_dicts(doc: dict, key: str, problems: list[str]) -> list[dict]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.append(f"{key} is not a list of objects: {value!r:.200}")
        return []
    for item in value:
        for sub in ("value", "type", "country"):
            if sub in item and not isinstance(item[sub], str):
                problems.append(f"{key}[].{sub} is not a string: {item[sub]!r:.100}")
    return value


def user_record_problems(record: DirectoryRecord) -> list[str]:
    doc = record.document
    if not isinstance(doc, dict):
        return [f"document is {type(doc).__name__}"]
    problems = _nulls(doc, "document")
    for forbidden in ("id", "meta", "password"):
        if forbidden in doc:
            problems.append(f"document stores {forbidden!r}")
    if USER_SCHEMA not in (doc.get("schemas") or []):
        problems.append(f"schemas lacks the User schema: {doc.get('schemas')!r}")
    user_name = doc.get("userName")
    if not isinstance(user_name, str) or not user_name.strip():
        problems.append(f"userName is {user_name!r}")
    _expect(doc, "active", bool, problems)
    for key in ("externalId", "displayName", "title"):
        _expect(doc, key, str, problems)
    _expect(doc, "name", dict, problems)
    if isinstance(doc.get("name"), dict):
        for sub in ("givenName", "familyName"):
            _expect(doc["name"], sub, str, problems)
    emails = _list_of_dicts(doc, "emails", problems)
    _list_of_dicts(doc, "phoneNumbers", problems)
    _list_of_dicts(doc, "addresses", problems)
    enterprise = doc.get(ENTERPRISE, {})
    manager_id = None
    if not isinstance(enterprise, dict):
        problems.append("enterprise extension is not an object")
    else:
        for key in ("employeeNumber", "department"):
            _expect(enterprise, key, str, problems)
        manager = enterprise.get("manager")
        if manager is not None:
            if not isinstance(manager, dict) or not isinstance(manager.get("value"), str):
                problems.append(f"manager is not {{'value': id}}: {manager!r:.100}")
            else:
                manager_id = manager["value"]
    if problems:
        return problems
    try:
        EnterpriseUserModel.model_validate(
            {**doc, "id": str(record.scim_id)}, scim_ctx=Context.RESOURCE_QUERY_RESPONSE
        )
    except Exception as exc:  # report the validation error text
        problems.append(f"scim2-models rejects the stored User: {exc}")
    # Mirror columns, kept equal to the document by the SCIM layer.
    work = [e for e in emails if e.get("type") == "work" and e.get("value")]
    for entry in work:
        try:
            validate_email(entry["value"])
        except ValidationError:
            problems.append(f"stored work email is not an address: {entry['value']!r:.100}")
    expected_email = work[0]["value"].lower() if work else None
    mirrors = {
        "user_name": (record.user_name, user_name),
        "user_name_key": (record.user_name_key, user_name.casefold()),
        "external_id": (record.external_id, doc.get("externalId")),
        "display_name": (record.display_name, doc.get("displayName", "")),
        "active": (record.active, doc.get("active", True)),
        "work_email": (record.work_email, expected_email),
        "manager_scim_id": (
            str(record.manager_scim_id) if record.manager_scim_id else None,
            _uuid_or_none(manager_id),
        ),
    }
    for column, (stored, expected) in mirrors.items():
        if stored != expected:
            problems.append(f"mirror {column}={stored!r} but document says {expected!r}")
    return problems


def _uuid_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def group_record_problems(record: DirectoryRecord) -> list[str]:
    doc = record.document
    if not isinstance(doc, dict):
        return [f"document is {type(doc).__name__}"]
    problems = _nulls(doc, "document")
    for forbidden in ("id", "meta", "members"):
        if forbidden in doc:
            problems.append(f"group document stores {forbidden!r}")
    if GROUP_SCHEMA not in (doc.get("schemas") or []):
        problems.append(f"schemas lacks the Group schema: {doc.get('schemas')!r}")
    if not isinstance(doc.get("displayName"), str):
        problems.append(f"displayName is {doc.get('displayName')!r}")
    _expect(doc, "externalId", str, problems)
    if problems:
        return problems
    try:
        Group.model_validate(
            {**doc, "id": str(record.scim_id)}, scim_ctx=Context.RESOURCE_QUERY_RESPONSE
        )
    except Exception as exc:
        problems.append(f"scim2-models rejects the stored Group: {exc}")
    if record.display_name != doc["displayName"]:
        problems.append(f"mirror display_name={record.display_name!r} != {doc['displayName']!r}")
    if record.external_id != doc.get("externalId"):
        problems.append(f"mirror external_id={record.external_id!r} != {doc.get('externalId')!r}")
    return problems


def record_problems(record: DirectoryRecord) -> list[str]:
    if record.resource_type == DirectoryRecord.ResourceType.USER:
        found = user_record_problems(record)
    else:
        found = group_record_problems(record)
    return [f"{record.resource_type} {record.scim_id}: {p}" for p in found]


def store_problems(*, organization_ids: list[int] | None = None) -> list[str]:
    """Every stored record (of these organizations) and every directory membership."""
    records = DirectoryRecord.objects.all()
    links = DirectoryMembership.objects.select_related("group_record", "user_record")
    if organization_ids is not None:
        records = records.filter(organization_id__in=organization_ids)
        links = links.filter(group_record__organization_id__in=organization_ids)
    problems = [p for record in records.iterator() for p in record_problems(record)]
    for link in links:
        group, user = link.group_record, link.user_record
        if group.organization_id != user.organization_id:
            problems.append(f"membership {link.pk} crosses organizations")
        if group.resource_type != "Group" or user.resource_type != "User":
            problems.append(
                f"membership {link.pk} links {group.resource_type}→{user.resource_type}"
            )
    return problems


# --- a write's effect: 2xx and applied, or 4xx and unchanged (issue 12) -----------------------

# The one refusal only the apply job can know (another user's member holds the identifier):
# shown as a failure with this reason, which the directory must fix.
CLASH_REASON = "already belongs to"


def organization_state(organization_id: int) -> tuple[int, int, int]:
    """How many records, members and change events the organization has."""
    return (
        DirectoryRecord.objects.filter(organization_id=organization_id).count(),
        Member.objects.filter(organization_id=organization_id).count(),
        ChangeEvent.objects.filter(organization_id=organization_id).count(),
    )


def record_state(scim_id: str | None) -> tuple | None:
    """Everything a write to the record could change: the record, its group links, its member
    (or Beem group) with departments and groups. None when there is no such record."""
    try:
        uuid.UUID(str(scim_id))
    except ValueError:
        return None
    record = DirectoryRecord.objects.filter(scim_id=scim_id).first()
    if record is None:
        return None
    member = (
        Member.objects.filter(pk=record.member_id).values().first() if record.member_id else None
    )
    if member is not None:
        member.pop("updated_at")
        member["departments"] = sorted(
            DepartmentMembership.objects.filter(member_id=record.member_id).values_list(
                "department_id", "is_primary"
            )
        )
        member["groups"] = sorted(
            GroupMembership.objects.filter(member_id=record.member_id).values_list(
                "group_id", flat=True
            )
        )
    group = None
    if record.group_id:
        group = (
            BeemGroup.objects.filter(pk=record.group_id).values_list("name", flat=True).first(),
            sorted(
                GroupMembership.objects.filter(group_id=record.group_id).values_list(
                    "member_id", flat=True
                )
            ),
        )
    links = sorted(
        DirectoryMembership.objects.filter(group_record=record).values_list(
            "user_record_id", flat=True
        )
    )
    return (
        record.version,
        json.dumps(record.document, sort_keys=True),
        record.deleted_at,
        record.active,
        record.member_id,
        links,
        member,
        group,
    )


def unchanged_problems(
    before: tuple, after: tuple, target_before: tuple | None, target_after: tuple | None
) -> list[str]:
    """A refused request (4xx) changed nothing: no record, member or event appeared or went,
    and the record it addressed (with its member or group) is as it was."""
    problems = []
    names = ("records", "members", "change events")
    for name, b, a in zip(names, before, after, strict=True):
        if b != a:
            problems.append(f"a refused request changed the number of {name}: {b} -> {a}")
    if target_before != target_after:
        problems.append(f"a refused request changed its record: {target_before} -> {target_after}")
    return problems


def applied_problems(scim_id: str) -> list[str]:
    """An accepted write to the record was applied (eagerly, before the answer): no event of
    it pending or failed (except a clash with another user's identifier, which only the apply
    can find and shows as a failure with its reason), and the member or group matches it."""
    problems = []
    for event in ChangeEvent.objects.filter(scim_id=scim_id).exclude(
        status__in=(ChangeEvent.Status.APPLIED, ChangeEvent.Status.SKIPPED)
    ):
        if event.status == ChangeEvent.Status.FAILED and CLASH_REASON in event.reason:
            continue
        problems.append(f"accepted write not applied: {event.kind} {event.status}: {event.reason}")
    record = DirectoryRecord.objects.filter(scim_id=scim_id).first()
    if record is not None and not problems:
        latest = ChangeEvent.objects.filter(record=record).order_by("-id").first()
        if latest is None or latest.status != ChangeEvent.Status.FAILED:
            problems += [f"applied but differs: {d}" for d in record_member_differences(record)]
            problems += truncated_problems(record)
    return problems


def truncated_problems(record: DirectoryRecord) -> list[str]:
    """Text the member holds cut short: a value longer than its column must be refused at the
    door, not accepted and clipped (the engine's comparison allows for its clipping)."""
    member = Member.objects.filter(pk=record.member_id).first() if record.member_id else None
    if member is None or not isinstance(record.document, dict):
        return []
    document = record.document
    name = document.get("name") if isinstance(document.get("name"), dict) else {}
    enterprise = document.get(ENTERPRISE) if isinstance(document.get(ENTERPRISE), dict) else {}
    countries = [
        a.get("country")
        for a in document.get("addresses") or []
        if isinstance(a, dict) and a.get("type") == "work" and a.get("country")
    ]
    sent = {
        "display_name": document.get("displayName"),
        "given_name": name.get("givenName"),
        "family_name": name.get("familyName"),
        "job_title": document.get("title"),
        "country": countries[0] if countries else None,
        "employee_number": enterprise.get("employeeNumber"),
    }
    problems = []
    for column, value in sent.items():
        value = str(value or "").strip()
        held = getattr(member, column)
        if value and held != value and value.startswith(held):
            problems.append(
                f"member {column} holds {len(held)} of the {len(value)} characters sent"
            )
    return problems


def read_back_problems(answered: dict, read: dict) -> list[str]:
    """What a read of the resource says differently from the write's answer."""
    if answered == read:
        return []
    keys = sorted(set(answered) | set(read))
    return [
        f"read {key}={read.get(key)!r:.200}, answered {answered.get(key)!r:.200}"
        for key in keys
        if answered.get(key) != read.get(key)
    ]
