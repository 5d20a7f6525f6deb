"""Canonical SCIM documents: what a ``DirectoryRecord.document`` holds and what SCIM answers.

The shared data contract (``DirectoryRecord.document``): a User is
``{"schemas", "userName", "externalId", "active", "displayName", "name": {givenName,
familyName}, "emails", "phoneNumbers", "title", "addresses", "<enterprise URN>":
{employeeNumber, department, manager: {"value"}}}`` without ``id``/``meta``; absent attributes
are omitted, ``active`` is a real boolean. A Group is ``{"schemas", "displayName",
"externalId"}``; its members are ``DirectoryMembership`` rows.

Payloads are parsed with scim2-models under :data:`ENTRA_POLICY` (type checks, string booleans,
extension attributes whose URN is missing from ``schemas``), then reduced to the attributes
Beem advertises in ``/Schemas`` (see ``discovery.py``): anything else Entra sends is ignored,
not rejected (entra-contract.md, "Shapes the server must accept" #8).
"""

import copy
import uuid
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from pydantic import ValidationError
from scim2_models import Context, Email, EnterpriseUser, Group, ScimPolicy, User

from members.phones import EXAMPLE_E164, InvalidPhoneNumber, phone_to_e164

from . import errors

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MOBILE_PATH = 'phoneNumbers[type eq "mobile"].value'


class _Email(Email):
    # scim2-models' EmailStr lower-cases the domain; Entra compares what it reads back with
    # what it sent, so keep the value exactly as sent (validated in validate_user_document).
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

MAX_TEXT = 255
MAX_EMAIL = 254

# Sub-attributes kept for each multi-valued attribute (what /Schemas advertises).
_MULTI_VALUED = {
    "emails": ("value", "type", "primary"),
    "phoneNumbers": ("value", "type", "primary"),
    "addresses": ("country", "type"),
}
_SINGLE_VALUED = ("displayName", "title")
_ENTERPRISE_TEXT = ("employeeNumber", "department")


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
        try:
            model = UserModel.model_validate(payload, scim_policy=ENTRA_POLICY)
        except ValidationError as exc:
            raise errors.from_validation_error(exc)
        document = canonical_user(model)
    if manager_given and manager is not None:
        document.setdefault(ENTERPRISE_SCHEMA, {})["manager"] = manager
        _order_schemas(document)
    return document


# Entra's usual create body, checked by hand (``_usual_user_document``): attribute → allowed
# keys of its entries, and the entry types scim2-models takes as they are.
_USUAL_TOP = frozenset(
    {
        "schemas",
        "externalId",
        "userName",
        "active",
        "displayName",
        "title",
        "name",
        "emails",
        "phoneNumbers",
        "addresses",
        "roles",
        ENTERPRISE_SCHEMA,
    }
)
_USUAL_TYPES = {
    "emails": frozenset({"work", "home", "other"}),
    "phoneNumbers": frozenset({"work", "home", "mobile", "fax", "pager", "other"}),
    "addresses": frozenset({"work", "home", "other"}),
}
_USUAL_SCHEMAS = ([USER_SCHEMA], [USER_SCHEMA, ENTERPRISE_SCHEMA], [ENTERPRISE_SCHEMA, USER_SCHEMA])
_BOOLEAN_TEXT = {"true": True, "false": False}


def _text(value: Any) -> bool:
    return type(value) is str and value != ""


def _usual_entries(attribute: str, value: Any) -> list | None:
    """The kept entries of a multi-valued attribute, or None when it is not the usual shape."""
    if type(value) is not list:
        return None
    keep = _MULTI_VALUED[attribute]
    types = _USUAL_TYPES[attribute]
    entries = []
    for entry in value:
        if type(entry) is not dict or not entry.keys() <= set(keep):
            return None
        for key, item in entry.items():
            if key == "primary":
                if type(item) is not bool:
                    return None
            elif not _text(item) or (key == "type" and item not in types):
                return None
        kept = {key: entry[key] for key in keep if key in entry}
        if any(key in kept for key in keep if key not in ("type", "primary")):
            entries.append(kept)
    return entries


def _usual_user_document(payload: dict) -> dict | None:
    """The canonical document of Entra's usual create body, built without scim2-models; None
    for anything else (the full model then decides). Gives exactly what ``canonical_user``
    gives for these shapes (pinned by tests/directory_sync/scim/test_documents.py) at a
    fraction of its cost (bench profile: validating and dumping the model were a quarter of
    a POST's CPU). Accepted: the attributes of ``_USUAL_TOP`` spelled as Beem advertises them,
    non-empty strings, real booleans or "True"/"False" for ``active``, entries with the
    advertised sub-attributes and types, an empty ``roles``."""
    if not payload.keys() <= _USUAL_TOP or payload.get("schemas") not in _USUAL_SCHEMAS:
        return None
    if ENTERPRISE_SCHEMA in payload and ENTERPRISE_SCHEMA not in payload["schemas"]:
        return None
    if payload.get("roles", []) != []:
        return None
    document: dict[str, Any] = {"schemas": [USER_SCHEMA]}
    for key in ("userName", "externalId"):
        if key in payload:
            if not _text(payload[key]):
                return None
            document[key] = payload[key]
    active = payload.get("active", True)
    if type(active) is str:
        active = _BOOLEAN_TEXT.get(active.lower())
    if type(active) is not bool:
        return None
    document["active"] = active
    for key in _SINGLE_VALUED:
        if key in payload:
            if not _text(payload[key]):
                return None
            document[key] = payload[key]
    if "name" in payload:
        name = payload["name"]
        if type(name) is not dict or not name.keys() <= {"givenName", "familyName"}:
            return None
        if not all(_text(item) for item in name.values()):
            return None
        kept = {key: name[key] for key in ("givenName", "familyName") if key in name}
        if kept:
            document["name"] = kept
    for attribute in _MULTI_VALUED:
        if attribute in payload:
            entries = _usual_entries(attribute, payload[attribute])
            if entries is None:
                return None
            if entries:
                document[attribute] = entries
    if ENTERPRISE_SCHEMA in payload:
        extension = payload[ENTERPRISE_SCHEMA]
        if type(extension) is not dict or not extension.keys() <= set(_ENTERPRISE_TEXT):
            return None
        if not all(_text(item) for item in extension.values()):
            return None
        enterprise = {key: extension[key] for key in _ENTERPRISE_TEXT if key in extension}
        if enterprise:
            document[ENTERPRISE_SCHEMA] = enterprise
    _order_schemas(document)
    return document


def canonical_user(model: UserModel) -> dict:
    """Reduce a scim2-models User to the canonical document of the data contract."""
    dumped = model.model_dump(scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    document: dict[str, Any] = {"schemas": [USER_SCHEMA]}
    if dumped.get("userName") is not None:
        document["userName"] = dumped["userName"]
    if dumped.get("externalId") is not None:
        document["externalId"] = dumped["externalId"]
    active = dumped.get("active")
    # RFC 7643 leaves the default to the service provider: a user sent without it is active.
    document["active"] = True if active is None else bool(active)
    for key in _SINGLE_VALUED:
        if dumped.get(key) is not None:
            document[key] = dumped[key]
    name = {
        key: dumped.get("name", {}).get(key)
        for key in ("givenName", "familyName")
        if (dumped.get("name") or {}).get(key) is not None
    }
    if name:
        document["name"] = name
    for attribute, keep in _MULTI_VALUED.items():
        entries = []
        for entry in dumped.get(attribute) or []:
            kept = {key: entry[key] for key in keep if entry.get(key) is not None}
            if any(key in kept for key in keep if key not in ("type", "primary")):
                entries.append(kept)
        if entries:
            document[attribute] = entries
    extension = dumped.get(ENTERPRISE_SCHEMA) or {}
    enterprise: dict[str, Any] = {
        key: extension[key] for key in _ENTERPRISE_TEXT if extension.get(key) is not None
    }
    manager = (extension.get("manager") or {}).get("value")
    if manager:
        enterprise["manager"] = {"value": manager}
    if enterprise:
        document[ENTERPRISE_SCHEMA] = enterprise
    _order_schemas(document)
    return document


def _order_schemas(document: dict) -> None:
    schemas = [USER_SCHEMA]
    if document.get(ENTERPRISE_SCHEMA):
        schemas.append(ENTERPRISE_SCHEMA)
    else:
        document.pop(ENTERPRISE_SCHEMA, None)
    document["schemas"] = schemas


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


def validate_user_document(document: dict, *, sync_settings: Any) -> None:
    """Refuse a user Beem cannot store or could never match, with an actionable detail."""
    user_name = document.get("userName")
    if not isinstance(user_name, str) or not user_name.strip():
        raise errors.invalid_value("userName is required (Entra maps it from userPrincipalName).")
    for label, value, limit in (
        ("userName", user_name, MAX_TEXT),
        ("externalId", document.get("externalId"), MAX_TEXT),
        ("displayName", document.get("displayName"), MAX_TEXT),
        ('emails[type eq "work"].value', work_email(document), MAX_EMAIL),
    ):
        if isinstance(value, str) and len(value) > limit:
            raise errors.invalid_value(f"{label} is longer than {limit} characters.")
    if document.get("externalId") == "":
        raise errors.invalid_value("externalId must not be empty.")
    for entry in document.get("emails") or []:
        try:
            validate_email(entry["value"])
        except DjangoValidationError:
            raise errors.invalid_value(f"emails.value {entry['value']!r} is not an email address.")
    identify_by = getattr(sync_settings, "identify_by", None)
    # A disabled user is about to be deleted in Beem: refusing its "active False" PATCH for a
    # missing phone would only make Entra retry and quarantine the job. So the mobile rule
    # applies to active users only.
    if identify_by == "phone" and document.get("active", True):
        mobile = mobile_number(document)
        default_country = getattr(sync_settings, "default_phone_country", "") or None
        if not mobile:
            raise errors.invalid_value(
                f"{MOBILE_PATH} is required: this organization identifies members by mobile "
                f"number. Map 'mobile' in Entra ID and use the format {EXAMPLE_E164}."
            )
        try:
            phone_to_e164(mobile, default_country=default_country)
        except InvalidPhoneNumber as exc:
            raise errors.invalid_value(
                f"{MOBILE_PATH} {mobile!r} is not a valid mobile number ({exc}) Use the "
                f"international format with the country code, e.g. {EXAMPLE_E164}."
            )


# --- groups ----------------------------------------------------------------------------------


def group_document_from_payload(body: Any) -> tuple[dict, list[str] | None]:
    """Canonical group document and member ids (None when ``members`` is absent)."""
    if not isinstance(body, dict):
        raise errors.invalid_syntax("The request body must be a JSON object.")
    payload = {k: v for k, v in body.items() if k not in ("id", "meta", "members")}
    try:
        model = Group.model_validate(payload, scim_policy=ENTRA_POLICY)
    except ValidationError as exc:
        raise errors.from_validation_error(exc)
    document: dict[str, Any] = {"schemas": [GROUP_SCHEMA]}
    if model.display_name is not None:
        document["displayName"] = model.display_name
    if model.external_id is not None:
        document["externalId"] = model.external_id
    members = None
    for key, value in body.items():
        if key.lower() == "members":
            members = member_ids_from_value(value, allow_empty=True)
    return document, members


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


def validate_group_document(document: dict) -> None:
    name = document.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise errors.invalid_value("displayName is required for a group.")
    for label, value in (("displayName", name), ("externalId", document.get("externalId"))):
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise errors.invalid_value(f"{label} is longer than {MAX_TEXT} characters.")
    if document.get("externalId") == "":
        raise errors.invalid_value("externalId must not be empty.")
