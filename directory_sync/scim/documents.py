"""Canonical SCIM documents: what a ``DirectoryRecord.document`` holds and what SCIM answers.

The shared data contract (``DirectoryRecord.document``): a User is every attribute of the
RFC 7643 core User schema and of the enterprise extension that has a value (scim2-models'
``User[EnterpriseUser]``, in its order), without ``id``/``meta``/``groups`` and without the
``password`` (accepted, never stored); the manager is kept as ``{"value": id}``; absent
attributes are omitted, ``active`` is a real boolean. Beem applies names, emails, mobile,
title, country, employee number, department and manager to the member; the rest is kept on
the record. A Group is ``{"schemas", "displayName", "externalId"}``; its members are
``DirectoryMembership`` rows.

Payloads are parsed with scim2-models under :data:`ENTRA_POLICY` (type checks, string booleans,
extension attributes whose URN is missing from ``schemas``), then reduced to the attributes
Beem advertises in ``/Schemas`` (see ``discovery.py``): anything else Entra sends is ignored,
not rejected (entra-contract.md, "Shapes the server must accept" #8), in every write form
(POST, PUT, PATCH with or without a path). What is refused in a document is in
``document_checks``.
"""

import copy
import uuid
from typing import Any

from django.conf import settings
from pydantic import ValidationError
from scim2_models import (
    Address,
    Context,
    Email,
    EnterpriseUser,
    Group,
    Name,
    PhoneNumber,
    ScimPolicy,
    User,
)

from . import errors
from .constants import BOOLEAN_TEXT, ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA


class _Email(Email):
    # scim2-models' EmailStr lower-cases the domain; Entra compares what it reads back with
    # what it sent, so keep the value exactly as sent (validated in document_checks).
    value: str | None = None


class UserModel(User[EnterpriseUser]):
    """scim2-models' User with the enterprise extension, keeping emails as sent."""

    emails: list[_Email] | None = None


# Entra ID is not RFC-strict (entra-contract.md): unknown attributes and schema URIs are
# dropped instead of refused, "Remove members" carries the values to remove, and a value-filter
# path such as emails[type eq "work"].value creates the entry it describes.
ENTRA_POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)


def _alias(model: Any, name: str) -> str:
    return model.model_fields[name].serialization_alias or name


def _plain_text(model: Any) -> tuple[str, ...]:
    """The attributes of a scim2-models class that are plain strings (kept as sent), in the
    model's order."""
    return tuple(
        _alias(model, name)
        for name, field in model.model_fields.items()
        if field.annotation == (str | None) and name not in ("id", "password")
    )


# Never kept on the record: read-only attributes the server owns, and the password, accepted
# on write (Entra may map one) but never stored or returned (RFC 7643 §4.1.1).
NEVER_STORED = frozenset({"id", "meta", "password", "groups"})
# The order of a canonical document's attributes: scim2-models' (so both ways of building it
# give the same JSON).
_USER_ORDER = (
    "schemas",
    *(_alias(UserModel, name) for name in UserModel.model_fields if name != "schemas"),
    ENTERPRISE_SCHEMA,
)
_ENTRY_MODELS = {"emails": _Email, "phoneNumbers": PhoneNumber, "addresses": Address}
# Sub-attributes of an entry that only qualify it: an entry with nothing else is dropped.
_QUALIFIERS = ("type", "primary")


# --- Entra quirks on raw JSON ----------------------------------------------------------------


def manager_value(raw: Any) -> dict | None:
    """Normalise every form Entra sends a manager in to ``{"value": id}`` or None (clear).

    Entra sends ``[{"$ref": ..., "value": id}]``, ``{"value": id}`` or a bare id string, and
    ``""`` to clear it (entra-contract.md #7). Only ``value`` (our SCIM id) matters: ``$ref``
    is re-derived when we answer.
    """
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    if isinstance(raw, dict):
        raw = raw.get("value")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str):
        raise errors.invalid_value(
            f"{ENTERPRISE_SCHEMA}:manager must be the SCIM id of the manager (a string)."
        )
    raw = raw.strip()
    try:
        uuid.UUID(raw)
    except ValueError:
        raise errors.invalid_value(
            f"{ENTERPRISE_SCHEMA}:manager {raw!r} is not the id of a user of this directory."
        )
    return {"value": raw}


def _enterprise_key(body: dict) -> str | None:
    for key in body:
        if isinstance(key, str) and key.lower() == ENTERPRISE_SCHEMA.lower():
            return key
    return None


def _prepare_user_payload(body: dict) -> tuple[dict, bool, dict | None]:
    """Copy ``body`` without client ``id``/``meta``, with the manager taken out and normalised.

    Returns (payload, manager_given, manager). The manager is put back after validation:
    scim2-models' Manager wants a ``$ref`` Entra does not always send.
    """
    payload = {k: v for k, v in body.items() if k not in ("id", "meta")}
    key = _enterprise_key(payload)
    manager_given, manager = False, None
    if key is not None:
        extension = payload[key]
        if extension is None:
            del payload[key]
        elif isinstance(extension, dict):
            extension = dict(extension)
            for name in list(extension):
                if name.lower() == "manager":
                    manager_given, manager = True, manager_value(extension.pop(name))
            payload[key] = extension
    return payload, manager_given, manager


# --- users -----------------------------------------------------------------------------------


def user_model_from_document(document: dict) -> UserModel:
    """Load a stored (canonical) document into the scim2-models User the PATCH engine edits."""
    try:
        return UserModel.model_validate(copy.deepcopy(document), scim_policy=ENTRA_POLICY)
    except ValidationError as exc:  # a stored document is canonical; this is a bug, not input
        raise errors.ScimError(f"Stored user document is invalid: {exc}", status=500)


def user_document_from_payload(body: Any) -> dict:
    """Canonical user document from a POST/PUT body (quirks normalised, unknowns dropped)."""
    if not isinstance(body, dict):
        raise errors.invalid_syntax("The request body must be a JSON object.")
    payload, manager_given, manager = _prepare_user_payload(body)
    document = _usual_user_document(payload)
    if document is None:
        with errors.scim_errors():
            model = UserModel.model_validate(payload, scim_policy=ENTRA_POLICY)
        document = canonical_user(model)
    if manager_given and manager is not None:
        document.setdefault(ENTERPRISE_SCHEMA, {})["manager"] = manager
        order_user_document(document)
    return document


# Entra's usual create body, checked by hand (``_usual_user_document``): the attributes that
# scim2-models keeps exactly as sent (plain strings), and the entry types it takes as they are.
USUAL_TEXT = _plain_text(UserModel)
USUAL_NAME = _plain_text(Name)
USUAL_ENTERPRISE = _plain_text(EnterpriseUser)
# Sub-attributes of each entry in scim2-models' order (the order canonical entries keep).
ENTRY_ORDER = {
    attribute: tuple(_alias(model, name) for name in model.model_fields)
    for attribute, model in _ENTRY_MODELS.items()
}
USUAL_ENTRIES = {
    attribute: (_plain_text(model), frozenset(t.value for t in model.Type))
    for attribute, model in _ENTRY_MODELS.items()
}
_USUAL_TOP = frozenset(
    {"schemas", "active", "name", "roles", ENTERPRISE_SCHEMA, *USUAL_TEXT, *USUAL_ENTRIES}
)
_USUAL_SCHEMAS = ([USER_SCHEMA], [USER_SCHEMA, ENTERPRISE_SCHEMA], [ENTERPRISE_SCHEMA, USER_SCHEMA])


def _text(value: Any) -> bool:
    return type(value) is str and value != ""


def _usual_object(value: Any, keys: tuple[str, ...]) -> dict | None:
    """The object of plain text ``keys`` in the model's order; None when not that shape."""
    if type(value) is not dict or not value.keys() <= set(keys):
        return None
    if not all(_text(item) for item in value.values()):
        return None
    return {key: value[key] for key in keys if key in value}


def _usual_entries(attribute: str, value: Any) -> list | None:
    """The kept entries of a multi-valued attribute, or None when it is not the usual shape."""
    if type(value) is not list:
        return None
    texts, types = USUAL_ENTRIES[attribute]
    entries = []
    for entry in value:
        if type(entry) is not dict:
            return None
        kept = _usual_object({k: v for k, v in entry.items() if k not in _QUALIFIERS}, texts)
        if kept is None:
            return None
        if "type" in entry:
            if entry["type"] not in types:
                return None
            kept["type"] = entry["type"]
        if "primary" in entry:
            if type(entry["primary"]) is not bool:
                return None
            kept["primary"] = entry["primary"]
        if len(kept) > sum(key in kept for key in _QUALIFIERS):
            entries.append(kept)
    return entries


def _usual_user_document(payload: dict) -> dict | None:
    """The canonical document of Entra's usual create body, built without scim2-models; None
    for anything else (the full model then decides). Gives exactly what ``canonical_user``
    gives for these shapes (pinned by tests/directory_sync/scim/test_documents.py) at a
    fraction of its cost (validating and dumping the model are a large part of a POST's
    CPU). Accepted: the plain-string attributes of the core schema, its ``name`` and
    the enterprise extension (Entra's default mappings send several), spelled as Beem
    advertises them, non-empty; real booleans or "True"/"False" for ``active``; entries of
    ``emails``/``phoneNumbers``/``addresses`` with plain-string sub-attributes and the
    advertised types; an empty ``roles``."""
    if not payload.keys() <= _USUAL_TOP or payload.get("schemas") not in _USUAL_SCHEMAS:
        return None
    if ENTERPRISE_SCHEMA in payload and ENTERPRISE_SCHEMA not in payload["schemas"]:
        return None
    if payload.get("roles", []) != []:
        return None
    document: dict[str, Any] = {"schemas": [USER_SCHEMA]}
    for key in USUAL_TEXT:
        if key in payload:
            if not _text(payload[key]):
                return None
            document[key] = payload[key]
    active = payload.get("active", True)
    if type(active) is str:
        active = BOOLEAN_TEXT.get(active.lower())
    if type(active) is not bool:
        return None
    document["active"] = active
    if "name" in payload:
        name = _usual_object(payload["name"], USUAL_NAME)
        if name is None:
            return None
        if name:
            document["name"] = name
    for attribute in USUAL_ENTRIES:
        if attribute in payload:
            entries = _usual_entries(attribute, payload[attribute])
            if entries is None:
                return None
            if entries:
                document[attribute] = entries
    if ENTERPRISE_SCHEMA in payload:
        enterprise = _usual_object(payload[ENTERPRISE_SCHEMA], USUAL_ENTERPRISE)
        if enterprise is None:
            return None
        if enterprise:
            document[ENTERPRISE_SCHEMA] = enterprise
    order_user_document(document)
    return document


def _kept(value: Any) -> Any:
    """``value`` without None, empty objects and lists, and multi-valued entries that only
    qualify (type, primary) nothing; None when nothing is left."""
    if isinstance(value, dict):
        pairs = ((key, _kept(item)) for key, item in value.items())
        return {key: item for key, item in pairs if item is not None} or None
    if isinstance(value, list):
        entries = []
        for entry in value:
            entry = _kept(entry)
            if entry is None:
                continue
            if isinstance(entry, dict) and len(entry) == sum(k in entry for k in _QUALIFIERS):
                continue
            entries.append(entry)
        return entries or None
    return value


def canonical_user(model: UserModel) -> dict:
    """Reduce a scim2-models User to the canonical document of the data contract: every
    attribute of the core schema and the enterprise extension that has a value, except the
    ones never stored (``NEVER_STORED``)."""
    dumped = model.model_dump(scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    document: dict[str, Any] = {}
    for key, value in dumped.items():
        if key in NEVER_STORED or key in ("schemas", ENTERPRISE_SCHEMA):
            continue
        value = _kept(value)
        if value is not None:
            document[key] = value
    active = dumped.get("active")
    # RFC 7643 leaves the default to the service provider: a user sent without it is active.
    document["active"] = True if active is None else bool(active)
    extension = dumped.get(ENTERPRISE_SCHEMA) or {}
    enterprise: dict[str, Any] = (
        _kept({key: value for key, value in extension.items() if key not in ("schemas", "manager")})
        or {}
    )
    manager = (extension.get("manager") or {}).get("value")
    if manager:
        enterprise["manager"] = {"value": manager}
    if enterprise:
        document[ENTERPRISE_SCHEMA] = enterprise
    order_user_document(document)
    return document


def order_user_document(document: dict) -> None:
    """Set ``schemas`` from the attributes present and put attributes in canonical order."""
    schemas = [USER_SCHEMA]
    if document.get(ENTERPRISE_SCHEMA):
        schemas.append(ENTERPRISE_SCHEMA)
    else:
        document.pop(ENTERPRISE_SCHEMA, None)
    document["schemas"] = schemas
    ordered = {key: document[key] for key in _USER_ORDER if key in document}
    document.clear()
    document.update(ordered)


def work_email(document: dict) -> str | None:
    """The work email (lower-cased) that ``emails[type eq "work"].value`` filters compare."""
    for entry in document.get("emails") or []:
        if (entry.get("type") or "").lower() == "work" and entry.get("value"):
            return entry["value"].lower()
    return None


def mobile_number(document: dict) -> str | None:
    for entry in document.get("phoneNumbers") or []:
        if (entry.get("type") or "").lower() == "mobile" and entry.get("value"):
            return entry["value"]
    return None


def manager_id(document: dict) -> str | None:
    return ((document.get(ENTERPRISE_SCHEMA) or {}).get("manager") or {}).get("value")


def user_mirror(document: dict) -> dict:
    """Mirror columns of a user record, kept equal to its document (data contract)."""
    user_name = document["userName"]
    manager = manager_id(document)
    return {
        "user_name": user_name,
        "user_name_key": user_name.casefold(),
        "external_id": document.get("externalId"),
        "display_name": document.get("displayName") or "",
        "work_email": work_email(document),
        "manager_scim_id": uuid.UUID(manager) if manager else None,
        "active": bool(document.get("active", True)),
    }


# --- groups ----------------------------------------------------------------------------------


def group_document_from_payload(body: Any) -> tuple[dict, list[str] | None]:
    """Canonical group document and member ids (None when ``members`` is absent)."""
    if not isinstance(body, dict):
        raise errors.invalid_syntax("The request body must be a JSON object.")
    payload = {k: v for k, v in body.items() if k not in ("id", "meta", "members")}
    with errors.scim_errors():
        model = Group.model_validate(payload, scim_policy=ENTRA_POLICY)
    document: dict[str, Any] = {"schemas": [GROUP_SCHEMA]}
    if model.display_name is not None:
        document["displayName"] = model.display_name
    if model.external_id is not None:
        document["externalId"] = model.external_id
    members = None
    for key, value in body.items():
        if key.lower() == "members":
            members = member_ids_from_value(value, allow_empty=True)
            check_members_per_request(len(members))
    return document, members


def check_members_per_request(count: int) -> None:
    """Refuse a request naming more group members than ``BEEM_SCIM_MAX_MEMBERS_PER_REQUEST``:
    the members of one request are resolved and linked by one statement each, with one SQL
    parameter per member (PostgreSQL takes at most 65,535)."""
    maximum = settings.BEEM_SCIM_MAX_MEMBERS_PER_REQUEST
    if count > maximum:
        raise errors.too_many(
            f"The request names {count} group members; at most {maximum} are accepted in one "
            "request. Send the members in several PATCH requests."
        )


def member_ids_from_value(value: Any, *, allow_empty: bool = False) -> list[str]:
    """Member ids from ``[{"value": id, "$ref": null}, ...]`` (several per operation, #6)."""
    if value is None:
        value = []
    if isinstance(value, dict | str):
        value = [value]
    if not isinstance(value, list):
        raise errors.invalid_value('members must be a list of {"value": "<user id>"} objects.')
    ids = []
    for item in value:
        raw = item.get("value") if isinstance(item, dict) else item
        if not isinstance(raw, str) or not raw.strip():
            raise errors.invalid_value('Each member needs a "value": the SCIM id of a user.')
        try:
            ids.append(str(uuid.UUID(raw.strip())))
        except ValueError:
            raise errors.invalid_value(f"Member {raw!r} is not the id of a user of this directory.")
    if not ids and not allow_empty:
        raise errors.invalid_value("No members given.")
    return ids


def group_mirror(document: dict) -> dict:
    return {
        "user_name": None,
        "user_name_key": None,
        "external_id": document.get("externalId"),
        "display_name": document.get("displayName") or "",
        "work_email": None,
        "manager_scim_id": None,
        "active": True,
    }
