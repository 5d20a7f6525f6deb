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
import re
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from pydantic import ValidationError
from scim2_models import Context, Email, EnterpriseUser, Group, ScimPolicy, User

from members.models import Department, Member
from members.phones import EXAMPLE_E164, InvalidPhoneNumber, phone_to_e164

from ..models import DirectoryRecord, SyncSettings
from ..text import unstorable_text
from . import errors

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MOBILE_PATH = 'phoneNumbers[type eq "mobile"].value'
WORK_EMAIL_PATH = 'emails[type eq "work"].value'


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


def _column(model: Any, name: str) -> int:
    return model._meta.get_field(name).max_length


# What the apply job writes each attribute into, so that every value accepted here fits its
# column (design.md §3: a value longer than its column is refused at the door, not failed in
# the apply job). Several columns take one attribute: the shortest wins.
MAX_TEXT = _column(DirectoryRecord, "display_name")  # also the bound of unmapped kept text
MAX_USER_NAME = min(
    _column(DirectoryRecord, "user_name"), _column(DirectoryRecord, "user_name_key")
)
MAX_EXTERNAL_ID = _column(DirectoryRecord, "external_id")
MAX_DISPLAY_NAME = min(MAX_TEXT, _column(Member, "display_name"))
MAX_EMAIL = min(_column(DirectoryRecord, "work_email"), _column(Member, "email"))
MAX_GIVEN_NAME = _column(Member, "given_name")
MAX_FAMILY_NAME = _column(Member, "family_name")
MAX_TITLE = _column(Member, "job_title")
MAX_COUNTRY = _column(Member, "country")
MAX_EMPLOYEE_NUMBER = _column(Member, "employee_number")
# The whole department value, not only each segment of a structure string: every segment
# then fits a department name whatever format the administrator switches to later (a plain
# name is one department). Entra's own department attribute holds at most 64 characters.
MAX_DEPARTMENT = _column(Department, "name")

# Sub-attributes kept for each multi-valued attribute (what /Schemas advertises).
_MULTI_VALUED = {
    "emails": ("value", "type", "primary"),
    "phoneNumbers": ("value", "type", "primary"),
    "addresses": ("country", "type"),
}
_SINGLE_VALUED = ("displayName", "title")
_ENTERPRISE_TEXT = ("employeeNumber", "department")


# --- text a database can store ----------------------------------------------------------------

# What cannot be stored: see directory_sync/text.py. In a request it arrives only as a JSON
# "\u" escape (a raw NUL is not valid JSON, raw surrogate bytes are not UTF-8), or as "%00" in
# a query string.
_UNSTORABLE_ESCAPE_RE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
UNSTORABLE_DETAIL = (
    "must not contain the NUL character (\\u0000) or an unpaired UTF-16 surrogate "
    "(\\ud800-\\udfff): they cannot be stored"
)


def _contains_unstorable(value: Any) -> bool:
    """Whether any key or string of a parsed JSON value holds unstorable text (iterative:
    bodies can be deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if unstorable_text(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def refuse_unstorable_body(text: str, data: Any) -> None:
    """400 invalidValue when the parsed body ``data`` (of JSON ``text``) holds unstorable text.

    Refused wherever it appears, also in attributes, paths and values Beem ignores (never
    silently dropped): one rule for every SCIM write, checked once before anything else reads
    the body, so no such text reaches a record, an event or the request log. The walk over the
    parsed body only runs when the JSON text has such an escape at all.
    """
    if _UNSTORABLE_ESCAPE_RE.search(text) and _contains_unstorable(data):
        raise errors.invalid_value(f"Text in the request body {UNSTORABLE_DETAIL}.")


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


def _check_length(label: str, value: Any, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise errors.invalid_value(f"{label} is longer than {limit} characters.")


def max_multi_valued() -> int:
    return settings.BEEM_SCIM_MAX_MULTI_VALUED


# Sub-attributes kept for each multi-valued attribute and their length limits: the work email
# becomes the member's email, the work country the member's country; the rest is kept only in
# the document, bounded like any other directory text.
_ENTRY_LIMITS = {
    "emails": {"value": MAX_EMAIL, "type": MAX_TEXT},
    "phoneNumbers": {"value": MAX_TEXT, "type": MAX_TEXT},
    "addresses": {"country": MAX_COUNTRY, "type": MAX_TEXT},
}


def _check_user_lengths(document: dict) -> None:
    """Every stored text within its column (``_column`` above), derived forms included."""
    user_name = document["userName"]
    _check_length("userName", user_name, MAX_USER_NAME)
    # user_name_key holds the case-folded userName, which can be longer ("ß" folds to "ss").
    if len(user_name.casefold()) > MAX_USER_NAME:
        raise errors.invalid_value(
            f"userName is longer than {MAX_USER_NAME} characters once case-folded (Beem "
            'compares user names case-insensitively, and e.g. "ß" folds to "ss").'
        )
    _check_length("externalId", document.get("externalId"), MAX_EXTERNAL_ID)
    _check_length("displayName", document.get("displayName"), MAX_DISPLAY_NAME)
    _check_length("title", document.get("title"), MAX_TITLE)
    name = document.get("name") or {}
    _check_length("name.givenName", name.get("givenName"), MAX_GIVEN_NAME)
    _check_length("name.familyName", name.get("familyName"), MAX_FAMILY_NAME)
    maximum = max_multi_valued()
    for attribute, limits in _ENTRY_LIMITS.items():
        entries = document.get(attribute) or ()
        if len(entries) > maximum:
            raise errors.invalid_value(
                f"{attribute} holds {len(entries)} values; a user may hold at most {maximum}."
            )
        for entry in entries:
            for key, limit in limits.items():
                _check_length(f"{attribute}.{key}", entry.get(key), limit)
    # The work email is stored lower-cased, which can lengthen it ("İ" lowers to 2 characters).
    _check_length(WORK_EMAIL_PATH, work_email(document), MAX_EMAIL)
    enterprise = document.get(ENTERPRISE_SCHEMA) or {}
    _check_length("employeeNumber", enterprise.get("employeeNumber"), MAX_EMPLOYEE_NUMBER)
    _check_length("department", enterprise.get("department"), MAX_DEPARTMENT)


def _check_emails(document: dict) -> None:
    """Every email an address, also in the lower-cased form the apply job validates and
    stores (lower-casing can make an internationalised domain invalid)."""
    for entry in document.get("emails") or []:
        value = entry["value"]
        for form in {value, value.lower()}:
            try:
                validate_email(form)
            except DjangoValidationError:
                raise errors.invalid_value(f"emails.value {value!r} is not an email address.")


def _mobile_e164(document: dict, sync_settings: Any) -> str:
    """The mobile number as the apply job normalises it; invalidValue when it cannot."""
    mobile = mobile_number(document)
    default_country = getattr(sync_settings, "default_phone_country", "") or None
    try:
        return phone_to_e164(mobile, default_country=default_country)
    except InvalidPhoneNumber as exc:
        raise errors.invalid_value(
            f"{MOBILE_PATH} {mobile!r} is not a valid mobile number ({exc}) Use the "
            f"international format with the country code, e.g. {EXAMPLE_E164}."
        )


def _check_identifier(document: dict, *, sync_settings: Any) -> None:
    """The user has the identifier the apply job needs to create or match its member."""
    identify_by = getattr(sync_settings, "identify_by", None)
    if identify_by == SyncSettings.IdentifyBy.PHONE:
        if not mobile_number(document):
            raise errors.invalid_value(
                f"{MOBILE_PATH} is required: this organization identifies members by mobile "
                f"number. Map 'mobile' in Entra ID and use the format {EXAMPLE_E164}."
            )
        _mobile_e164(document, sync_settings)
    elif identify_by == SyncSettings.IdentifyBy.EMAIL and not work_email(document):
        # A member needs a mobile number or an email (members.services). The apply job reads
        # the email from the work email only, and drops a mobile number it cannot normalise.
        if not mobile_number(document):
            raise errors.invalid_value(
                f"{WORK_EMAIL_PATH} is required: this organization identifies members by "
                f"email address. Map 'mail' in Entra ID (or give the user a mobile number, "
                f"{MOBILE_PATH})."
            )
        _mobile_e164(document, sync_settings)


def validate_user_document(document: dict, *, sync_settings: Any) -> None:
    """Refuse a user Beem cannot store or could never apply, with an actionable detail.

    Everything the apply job (``directory_sync.apply``) would refuse from the document alone
    is refused here, before anything is written (design.md §3); only what depends on other
    members (an identifier held by a member created in Beem) is left to the apply job.
    """
    user_name = document.get("userName")
    if not isinstance(user_name, str) or not user_name.strip():
        raise errors.invalid_value("userName is required (Entra maps it from userPrincipalName).")
    _check_user_lengths(document)
    if document.get("externalId") == "":
        raise errors.invalid_value("externalId must not be empty.")
    _check_emails(document)
    # A disabled user is about to be deleted in Beem: refusing its "active False" PATCH for a
    # missing identifier would only make Entra retry and quarantine the job. So the identifier
    # rules apply to active users only.
    if document.get("active", True):
        _check_identifier(document, sync_settings=sync_settings)


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


def validate_group_document(document: dict) -> None:
    name = document.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise errors.invalid_value("displayName is required for a group.")
    _check_length("displayName", name, MAX_DISPLAY_NAME)
    _check_length("externalId", document.get("externalId"), MAX_EXTERNAL_ID)
    if document.get("externalId") == "":
        raise errors.invalid_value("externalId must not be empty.")
