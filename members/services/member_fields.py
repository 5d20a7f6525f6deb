"""Normalising and checking a member's fields before a write: mobile number to E.164, email
lower-cased and valid, both unique in the organization (the rules the sync applies too)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db.models.functions import Lower
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from ..models import Member, Organization
from ..phones import InvalidPhoneNumber, phone_to_e164
from .errors import MEMBER_FIELDS, MemberError

# The column sizes: the one source of the length limits of the forms, the sync and this check.
_MAX_LENGTH = {name: Member._meta.get_field(name).max_length for name in MEMBER_FIELDS}


def member_fields_normalise(
    fields: dict, *, default_country: str | None, validated: bool = False
) -> dict:
    clean = {}
    for key, value in fields.items():
        if key not in MEMBER_FIELDS and key not in (
            "manager",
            "directory_managed",
            "status",
            "department_display",
        ):
            raise MemberError(f"Unknown member field {key!r}.", field=key)
        if key in ("manager", "directory_managed", "status", "department_display"):
            clean[key] = value
            continue
        value = (value or "").strip() if isinstance(value, str) or value is None else value
        limit = _MAX_LENGTH[key]
        # A mobile number is checked as E.164 (at most 16 characters), whatever its spacing.
        if key != "phone" and value and len(value) > limit:
            # The sync clips to these limits before it gets here (engine/fields.py); an
            # administrator's form has the same limits, so this is the last guard.
            raise MemberError(
                _("At most %(limit)d characters.") % {"limit": limit},
                field=key,
            )
        if validated and key in ("phone", "email"):
            # The caller (the sync engine) already normalised and validated both.
            value = (value.lower() if key == "email" else value) if value else None
        elif key == "phone":
            if value:
                try:
                    value = phone_to_e164(value, default_country=default_country)
                except InvalidPhoneNumber as exc:
                    raise MemberError(str(exc), field="phone", msgid=exc.msgid, params=exc.params)
            else:
                value = None
        elif key == "email":
            if value:
                value = value.lower()
                try:
                    validate_email(value)
                except DjangoValidationError:
                    raise MemberError(f"'{value}' is not a valid email address.", field="email")
            else:
                value = None
        clean[key] = value
    return clean


PHONE_TAKEN = gettext_noop("Another member already has the mobile number %(phone)s.")
EMAIL_TAKEN = gettext_noop("Another member already has the email %(email)s.")


def member_fields_check_unique(
    *, organization: Organization, fields: dict, exclude_pk: int | None
) -> None:
    others = Member.objects.filter(organization=organization)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    phone = fields.get("phone")
    if phone and others.filter(phone=phone).exists():
        raise MemberError(
            _(PHONE_TAKEN) % {"phone": phone},
            field="phone",
            msgid=PHONE_TAKEN,
            params={"phone": phone},
        )
    email = fields.get("email")
    if email and others.annotate(e=Lower("email")).filter(e=email).exists():
        raise MemberError(
            _(EMAIL_TAKEN) % {"email": email},
            field="email",
            msgid=EMAIL_TAKEN,
            params={"email": email},
        )
