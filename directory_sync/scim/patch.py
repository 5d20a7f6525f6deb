"""PATCH (RFC 7644 §3.5.2) as Entra ID sends it.

Users go through scim2-models' PATCH engine under :data:`documents.ENTRA_POLICY` (any-case
``op``, string booleans, value-filter paths that create their entry, dotted and URN paths,
path-less values with dotted/URN keys). Before that, the Entra quirks the engine does not know
are normalised here (each one names its quirk). A path that is no attribute path at all is
``invalidPath``; a well-formed path outside the advertised schema is ignored, as the same
attribute is in a POST or a path-less PATCH (issue 15: one rule for every write form).

Groups are planned by hand: members are rows, not part of the document, so member operations
become set operations applied by ``directory_sync.records`` under the group's row lock; a
"Remove members" with a value list removes only those members (design.md §5).
"""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from pydantic import BaseModel
from scim2_models import Context, PatchOp

from . import errors
from .constants import (
    BOOLEAN_TEXT,
    ENTERPRISE_SCHEMA,
    GROUP_SCHEMA,
    PATCH_SCHEMA,
    USER_SCHEMA,
)
from .document_checks import max_multi_valued
from .documents import (
    ENTRA_POLICY,
    ENTRY_ORDER,
    USUAL_ENTERPRISE,
    USUAL_ENTRIES,
    USUAL_NAME,
    USUAL_TEXT,
    UserModel,
    canonical_user,
    check_members_per_request,
    manager_value,
    member_ids_from_value,
    order_user_document,
    user_model_from_document,
)

_OPS = ("add", "remove", "replace")

_ATTR_RE = re.compile(
    r"^(?P<attr>[A-Za-z][\w$-]*)(?P<filter>\[.*\])?(?:\.(?P<sub>[A-Za-z][\w$-]*))?$", re.S
)
_MEMBER_FILTER_RE = re.compile(r'^members\[\s*value\s+eq\s+"(?P<id>[^"]*)"\s*\]$', re.I)


def operations_from_body(body: Any) -> list[dict]:
    """The ``Operations`` of a PatchOp body, structurally checked (invalidSyntax otherwise)."""
    if not isinstance(body, dict):
        raise errors.invalid_syntax("The PATCH body must be a JSON object (a PatchOp message).")
    operations = None
    for key, value in body.items():
        if key.lower() == "operations":
            operations = value
    if not isinstance(operations, list) or not operations:
        raise errors.invalid_syntax('A PATCH body needs a non-empty "Operations" array.')
    maximum = settings.BEEM_SCIM_MAX_PATCH_OPERATIONS
    if len(operations) > maximum:
        raise errors.too_many(
            f"A PATCH request carries at most {maximum} operations; this one has "
            f"{len(operations)}. Send the changes in several requests."
        )
    for operation in operations:
        if not isinstance(operation, dict):
            raise errors.invalid_syntax("Each PATCH operation must be a JSON object.")
        op = operation.get("op", operation.get("Op"))
        if not isinstance(op, str) or op.lower() not in _OPS:
            raise errors.invalid_value(f"{op!r} is not a PATCH operation: add, remove or replace.")
        path = operation.get("path", operation.get("Path"))
        if path is not None and not isinstance(path, str):
            raise errors.invalid_path("A PATCH path must be a string.")
    return operations


def _op(operation: dict) -> str:
    # Entra sends "Add", "Replace", "Remove" (entra-contract.md #1).
    return operation.get("op", operation.get("Op")).lower()


def _path(operation: dict) -> str | None:
    path = operation.get("path", operation.get("Path"))
    return path.strip() or None if isinstance(path, str) else None


def _value(operation: dict) -> Any:
    return operation.get("value", operation.get("Value"))


# --- users -----------------------------------------------------------------------------------


def _strip_prefix(text: str, prefix: str) -> str | None:
    if text.lower().startswith(prefix.lower() + ":"):
        return text[len(prefix) + 1 :]
    return None


def _check_user_path(path: str) -> None:
    """Refuse a path that is not an attribute path at all (400 invalidPath).

    A well-formed path to an attribute Beem does not advertise (another extension's URN, a
    sub-attribute RFC 7643 does not define) is ignored like the same attribute in a POST or a
    path-less PATCH: scim2-models' engine under ENTRA_POLICY leaves the document unchanged.
    """
    if path.lower().startswith("urn:"):
        return
    if not _ATTR_RE.match(_strip_prefix(path, USER_SCHEMA) or path):
        raise errors.invalid_path(f"PATCH path {path!r} is not an attribute path.")


def _is_manager_path(path: str) -> bool:
    # Older Entra jobs send "manager" without the enterprise URN; the core User schema has
    # no attribute of that name, so it can only mean the enterprise manager.
    rest = _strip_prefix(path, ENTERPRISE_SCHEMA)
    return (rest if rest is not None else path).lower() in ("manager", "manager.value")


def _normalise_extension_value(value: Any) -> Any:
    """Normalise ``manager`` inside an enterprise extension object (quirk #7)."""
    if not isinstance(value, dict):
        return value
    value = dict(value)
    for key in list(value):
        if key.lower() == "manager":
            value[key] = manager_value(value[key])
    return value


def _normalise_user_operation(operation: dict) -> dict:
    op, path, value = _op(operation), _path(operation), _value(operation)
    if path is not None:
        _check_user_path(path)
        if op == "remove" and path.lower() in ("active", f"{USER_SCHEMA}:active".lower()):
            raise errors.mutability(
                "active cannot be removed; replace it with false to disable the user."
            )
        if _is_manager_path(path):
            manager_path = f"{ENTERPRISE_SCHEMA}:manager"
            # Quirk #7: a remove may carry the old manager as value; "" also clears it.
            manager = None if op == "remove" else manager_value(value)
            if manager is None:
                return {"op": "remove", "path": manager_path}
            return {"op": op, "path": manager_path, "value": manager}
        if path.lower() == ENTERPRISE_SCHEMA.lower():
            value = _normalise_extension_value(value)
    elif isinstance(value, dict):
        # Path-less replace with dotted and URN keys (entra-contract.md #5).
        normalised = {}
        for key, item in value.items():
            if not isinstance(key, str) or key.lower() in ("id", "meta", "schemas"):
                continue  # client meta/id are read-only; ignore them (#8)
            if _is_manager_path(key):
                key, item = f"{ENTERPRISE_SCHEMA}:manager", manager_value(item)
            elif key.lower() == ENTERPRISE_SCHEMA.lower():
                item = _normalise_extension_value(item)
            normalised[key] = item
        value = normalised
    elif op != "remove":
        raise errors.invalid_value("A PATCH operation without a path needs an object value.")
    result: dict[str, Any] = {"op": op}
    if path is not None:
        result["path"] = path
    if "value" in operation or "Value" in operation:
        result["value"] = value
    return result


# Plain-text attributes a replace/add can set directly on the canonical document (lower-cased
# path without the core URN → (container, key)); the enterprise ones are under its URN.
_SIMPLE_TEXT: dict[str, tuple[str | None, str]] = {
    **{key.lower(): (None, key) for key in USUAL_TEXT},
    **{f"name.{key.lower()}": ("name", key) for key in USUAL_NAME},
}
_SIMPLE_ENTERPRISE_TEXT = {key.lower(): key for key in USUAL_ENTERPRISE}


def _simple_target(path: str) -> tuple[str | None, str] | None:
    rest = _strip_prefix(path, ENTERPRISE_SCHEMA)
    if rest is not None:
        key = _SIMPLE_ENTERPRISE_TEXT.get(rest.lower())
        return (ENTERPRISE_SCHEMA, key) if key else None
    rest = (_strip_prefix(path, USER_SCHEMA) or path).lower()
    if rest == "active":
        return (None, "active")
    return _SIMPLE_TEXT.get(rest)


_ENTRY_PATH_RE = re.compile(r'^(?P<attr>\w+)\[type eq "(?P<type>\w+)"\]\.(?P<sub>\w+)$')


def _set_entry_text(result: dict, copied: set[str], path: str, value: str) -> bool:
    """Set ``attr[type eq "t"].sub`` (Entra's default mappings: work/fax phones, the work
    address' parts) on the one entry of that type, or a new one at the end as the engine
    does (``unmatched_path_filter=create``); False for any other shape."""
    match = _ENTRY_PATH_RE.match(path)
    if match is None or match["attr"] not in USUAL_ENTRIES:
        return False
    attribute, entry_type, sub = match["attr"], match["type"], match["sub"]
    texts, types = USUAL_ENTRIES[attribute]
    entries = result.get(attribute) or []
    if sub not in texts or entry_type not in types or not isinstance(entries, list):
        return False
    if attribute not in copied:
        entries = [dict(entry) for entry in entries]
        copied.add(attribute)
    matched = [entry for entry in entries if entry.get("type") == entry_type]
    if len(matched) > 1:
        return False
    if not matched:
        matched = [{"type": entry_type}]
        entries.append(matched[0])
    entry = matched[0]
    entry[sub] = value
    ordered = {key: entry[key] for key in ENTRY_ORDER[attribute] if key in entry}
    entry.clear()
    entry.update(ordered)
    result[attribute] = entries
    return True


def _simple_user_patch(document: dict, normalised: list[dict]) -> dict | None:
    """Entra's usual PATCH — replace (or add) of plain text attributes, of one entry's text by
    a value-filter path, and of ``active`` — applied directly to the canonical document; None
    when any operation needs the full engine.

    Gives exactly what the engine gives for these shapes (pinned by
    tests/directory_sync/scim/test_patch_users.py), at a fraction of its cost (loading the
    document into the model, validating the PatchOp and dumping it back are a large part of a
    PATCH's CPU).
    """
    result = dict(document)
    copied: set[str] = set()
    for operation in normalised:
        path, value = operation.get("path"), operation.get("value")
        if operation["op"] not in ("replace", "add") or path is None:
            return None
        if "[" in path:
            if not isinstance(value, str) or not value:
                return None
            if not _set_entry_text(result, copied, path, value):
                return None
            continue
        target = _simple_target(path)
        if target is None:
            return None
        container, key = target
        if key == "active":
            if isinstance(value, str):
                value = BOOLEAN_TEXT.get(value.lower())
            if not isinstance(value, bool):
                return None
        elif not isinstance(value, str) or not value:
            return None
        if container is None:
            result[key] = value
            continue
        if container not in copied:
            existing = result.get(container)
            if existing is not None and not isinstance(existing, dict):
                return None
            result[container] = dict(existing or {})
            copied.add(container)
        result[container][key] = value
    for container, order in (("name", USUAL_NAME), (ENTERPRISE_SCHEMA, USUAL_ENTERPRISE)):
        if container in copied:
            value = result[container]
            ordered = {key: value[key] for key in order if key in value}
            result[container] = ordered | {k: v for k, v in value.items() if k not in ordered}
    order_user_document(result)
    return result


def _split_value_filter_keys(operations: list[dict]) -> list[dict]:
    """A path-less operation's value-filter keys (``{"addresses[type eq \"work\"].locality":
    ...}``, as Entra sends them) as operations of their own with that path: scim2-models'
    engine only resolves dotted and URN keys there, and would ignore these."""
    result = []
    for operation in operations:
        value = _value(operation)
        if _path(operation) is not None or not isinstance(value, dict):
            result.append(operation)
            continue
        keys = [key for key in value if isinstance(key, str) and "[" in key]
        if not keys:
            result.append(operation)
            continue
        rest = {key: item for key, item in value.items() if key not in keys}
        if rest:
            result.append({"op": _op(operation), "value": rest})
        result.extend({"op": _op(operation), "path": key, "value": value[key]} for key in keys)
    return result


def user_patch_apply(document: dict, operations: list[dict]) -> dict:
    """Return the canonical user document after applying ``operations`` to ``document``."""
    operations = _split_value_filter_keys(operations)
    normalised = [_normalise_user_operation(operation) for operation in operations]
    simple = _simple_user_patch(document, normalised)
    if simple is not None:
        return simple
    return _engine_patch_apply(document, normalised)


def _engine_patch_apply(document: dict, normalised: list[dict]) -> dict:
    """scim2-models' PATCH engine under ENTRA_POLICY (every shape Entra may send).

    The engine's cost per operation grows with the values the attribute it writes already
    holds (each add compares its values with all of them, then validates the whole list again),
    so thousands of adds to one attribute cost quadratic time under the record's row lock (6,000
    "add emails": 30 s). Operations are applied in chunks that can add at most
    ``BEEM_SCIM_MAX_MULTI_VALUED`` values, and the bound is checked after each chunk: no
    attribute ever holds more than twice the bound, and a PATCH costs linear time in its
    operations. Applying in chunks is applying in order, as one PatchOp does (RFC 7644
    §3.5.2); the document is only stored when every operation succeeded.
    """
    model = user_model_from_document(document)
    maximum = max_multi_valued()
    with errors.scim_errors(), ENTRA_POLICY:
        for chunk in _chunks(normalised, maximum):
            patch = PatchOp[UserModel].model_validate(
                {"schemas": [PATCH_SCHEMA], "Operations": chunk},
                scim_ctx=Context.RESOURCE_PATCH_REQUEST,
            )
            patch.patch(model)
            _check_multi_valued(model, maximum)
    return canonical_user(model)


def _weight(operation: dict) -> int:
    """How many values ``operation`` can add to multi-valued attributes, at most."""
    value = operation.get("value")
    if isinstance(value, list):
        return max(len(value), 1)
    if isinstance(value, dict):
        return 1 + sum(len(item) for item in value.values() if isinstance(item, list))
    return 1


def _chunks(operations: list[dict], maximum: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    weight = 0
    for operation in operations:
        added = _weight(operation)
        if chunk and weight + added > maximum:
            yield chunk
            chunk, weight = [], 0
        chunk.append(operation)
        weight += added
    if chunk:
        yield chunk


def _check_multi_valued(model: BaseModel, maximum: int) -> None:
    for name, value in model.__dict__.items():
        if isinstance(value, list) and len(value) > maximum:
            attribute = type(model).model_fields[name].serialization_alias or name
            raise errors.invalid_value(
                f"{attribute} would hold more than {maximum} values; a user may hold at most "
                f"{maximum}."
            )


# --- groups ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberOp:
    """One change to a group's members: ``add``, ``remove`` or ``replace`` these user ids."""

    op: str
    ids: tuple[str, ...]


@dataclass
class GroupPatch:
    """A group PATCH as document changes (attribute → value, None removes) and member ops."""

    changes: dict[str, Any] = field(default_factory=dict)
    member_ops: list[MemberOp] = field(default_factory=list)


def _group_attribute(path: str) -> str:
    rest = _strip_prefix(path, GROUP_SCHEMA) or path
    return rest.lower()


def _set_group_text(plan: GroupPatch, attribute: str, op: str, value: Any) -> None:
    name = {"displayname": "displayName", "externalid": "externalId"}[attribute]
    if op == "remove" or value is None:
        if name == "displayName":
            raise errors.invalid_value("displayName is required for a group; it cannot be removed.")
        plan.changes[name] = None
        return
    if not isinstance(value, str):
        raise errors.invalid_value(f"{name} must be a string.")
    plan.changes[name] = value


def _member_op(pending: list[tuple[str, list[str]]], op: str, ids: Iterable[str]) -> None:
    """Append a member change; consecutive adds (or removes) become one, so a PATCH removing
    members one operation each (aadOptscim062020) is one statement, not one per member."""
    if pending and pending[-1][0] == op and op in ("add", "remove"):
        pending[-1][1].extend(ids)
    else:
        pending.append((op, list(ids)))


def group_patch_plan(operations: list[dict]) -> GroupPatch:
    plan = GroupPatch()
    pending: list[tuple[str, list[str]]] = []
    _group_patch_plan(plan, pending, operations)
    check_members_per_request(sum(len(ids) for _op, ids in pending))
    plan.member_ops = [MemberOp(op, tuple(ids)) for op, ids in pending]
    return plan


def _group_patch_plan(
    plan: GroupPatch, pending: list[tuple[str, list[str]]], operations: list[dict]
) -> None:
    for operation in operations:
        op, path, value = _op(operation), _path(operation), _value(operation)
        if path is None:
            if op == "remove":
                raise errors.no_target("A remove operation needs a path.")
            if not isinstance(value, dict):
                raise errors.invalid_value(
                    "A PATCH operation without a path needs an object value."
                )
            for key, item in value.items():
                attribute = _group_attribute(key) if isinstance(key, str) else ""
                if attribute in ("displayname", "externalid"):
                    _set_group_text(plan, attribute, op, item)
                elif attribute == "members":
                    ids = member_ids_from_value(item, allow_empty=True)
                    _member_op(pending, "add" if op == "add" else "replace", ids)
                # Anything else (schemas, meta, id, unknown attributes) is ignored (#8).
            continue
        attribute = _group_attribute(path)
        filtered = _MEMBER_FILTER_RE.match(_strip_prefix(path, GROUP_SCHEMA) or path)
        if attribute == "members":
            if op == "add":
                _member_op(pending, "add", member_ids_from_value(value))
            elif op == "replace":
                _member_op(pending, "replace", member_ids_from_value(value, allow_empty=True))
            elif value is None:
                # RFC 7644 §3.5.2.2: remove without value or filter removes all members.
                _member_op(pending, "replace", ())
            else:
                # Entra's {"op":"Remove","path":"members","value":[{"value":id}]} means "remove
                # these", not "remove all" (design.md §5).
                _member_op(pending, "remove", member_ids_from_value(value))
        elif filtered:
            if op != "remove":
                raise errors.invalid_path(
                    f'PATCH path {path!r} is only supported with "remove"; use path "members" '
                    "to add or replace members."
                )
            _member_op(pending, "remove", member_ids_from_value([{"value": filtered["id"]}]))
        elif attribute in ("displayname", "externalid"):
            _set_group_text(plan, attribute, op, value)
        else:
            raise errors.invalid_path(
                f"PATCH path {path!r} is not supported on groups. Supported: displayName, "
                'externalId, members, members[value eq "<id>"].'
            )


def group_document_apply(document: dict, changes: dict[str, Any]) -> dict:
    result = dict(document)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result
