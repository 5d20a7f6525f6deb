"""Reading a user document: the member fields the directory owns (the one place that reads
them for the engine and the reconcile), and their normalisation for the organization's
settings."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_noop

from members.models import Member
from members.phones import InvalidPhoneNumber, phone_to_e164

from ..models import SyncSettings
from ..notes import Message, exception_reason
from ..scim.constants import ENTERPRISE_SCHEMA
from ..scim.documents import work_email
from .results import ApplyError, Notes


def _typed_value(document: dict, attribute: str, wanted_type: str, key: str = "value") -> str:
    for entry in document.get(attribute) or []:
        if isinstance(entry, dict) and (entry.get("type") or "").lower() == wanted_type:
            value = entry.get(key)
            if value:
                return str(value).strip()
    return ""


def _enterprise(document: dict) -> dict:
    value = document.get(ENTERPRISE_SCHEMA)
    return value if isinstance(value, dict) else {}


def document_manager_scim_id(document: dict) -> uuid.UUID | None:
    manager = _enterprise(document).get("manager")
    value = manager.get("value") if isinstance(manager, dict) else None
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def document_department(document: dict) -> str:
    return str(_enterprise(document).get("department") or "").strip()


def _clip(value: str, field_name: str) -> str:
    # The SCIM layer bounds what it stores; clip to the member column so an oversized value
    # from an older record never turns into a database error.
    limit = Member._meta.get_field(field_name).max_length
    return value[:limit]


def document_member_fields(document: dict) -> dict:
    """The directory-owned member fields of a user document (raw phone, email as sent)."""
    name = document.get("name") if isinstance(document.get("name"), dict) else {}
    enterprise = _enterprise(document)
    return {
        "display_name": _clip(str(document.get("displayName") or "").strip(), "display_name"),
        "given_name": _clip(str(name.get("givenName") or "").strip(), "given_name"),
        "family_name": _clip(str(name.get("familyName") or "").strip(), "family_name"),
        "phone": _typed_value(document, "phoneNumbers", "mobile"),
        "email": (work_email(document) or "").strip(),
        "job_title": _clip(str(document.get("title") or "").strip(), "job_title"),
        "country": _clip(_typed_value(document, "addresses", "work", "country"), "country"),
        "employee_number": _clip(
            str(enterprise.get("employeeNumber") or "").strip(), "employee_number"
        ),
    }


def phone_normalise(
    fields: dict, *, identify_by: str, default_country: str | None, notes: Notes
) -> None:
    raw = fields["phone"]
    if not raw:
        return
    try:
        fields["phone"] = phone_to_e164(raw, default_country=default_country)
    except InvalidPhoneNumber as exc:
        if identify_by == SyncSettings.IdentifyBy.PHONE:
            raise ApplyError(
                Message(
                    gettext_noop(
                        "The mobile number cannot be used to identify the member: %(error)s"
                    ),
                    error=exception_reason(exc),
                )
            )
        # Not the identifier: keep the member's current number and say why.
        del fields["phone"]
        notes.add(
            Message(
                gettext_noop("Mobile number not synced: %(error)s"), error=exception_reason(exc)
            )
        )


def email_check(fields: dict, *, identify_by: str, notes: Notes) -> None:
    value = fields["email"]
    if not value:
        return
    try:
        validate_email(value)
    except DjangoValidationError:
        message = Message(gettext_noop("%(value)s is not a valid email address."), value=value)
        if identify_by == SyncSettings.IdentifyBy.EMAIL:
            raise ApplyError(message)
        # Not the identifier: keep the member's current email and say why.
        del fields["email"]
        notes.add(Message(gettext_noop("Email not synced: %(error)s"), error=message))
