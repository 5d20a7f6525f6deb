"""What Beem refuses in a SCIM document, before anything is written (design.md §3): text longer
than the column the apply job writes it into, lists longer than ``BEEM_SCIM_MAX_MULTI_VALUED``,
work emails that are not addresses, a user without the identifier the organization matches
members by, a group without a name, and text no database can store. Every refusal is
``400 invalidValue`` with a detail an Entra administrator can act on. The documents themselves
are built in ``documents``.
"""

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email

from members.models import Department, Member
from members.phones import EXAMPLE_E164, InvalidPhoneNumber, phone_to_e164

from ..models import DirectoryRecord, SyncSettings
from ..text import unstorable_text
from . import errors
from .constants import ENTERPRISE_SCHEMA
from .documents import mobile_number, work_email

MOBILE_PATH = 'phoneNumbers[type eq "mobile"].value'
WORK_EMAIL_PATH = 'emails[type eq "work"].value'


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

# Bound of x509Certificates values (base64 DER certificates run to a few kilobytes); every
# other string kept only on the record is bounded by MAX_TEXT.
MAX_BINARY = 16384


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


def _check_length(label: str, value: Any, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise errors.invalid_value(f"{label} is longer than {limit} characters.")


def max_multi_valued() -> int:
    return settings.BEEM_SCIM_MAX_MULTI_VALUED


# Length bounds of the attributes the apply job writes into a column (enterprise attributes
# named without their URN); every other stored string is kept only in the document, bounded
# by MAX_TEXT (certificates by MAX_BINARY). The work email becomes the member's email, the
# work country the member's country.
_TEXT_LIMITS = {
    "userName": MAX_USER_NAME,
    "externalId": MAX_EXTERNAL_ID,
    "displayName": MAX_DISPLAY_NAME,
    "title": MAX_TITLE,
    "name.givenName": MAX_GIVEN_NAME,
    "name.familyName": MAX_FAMILY_NAME,
    "emails.value": MAX_EMAIL,
    "addresses.country": MAX_COUNTRY,
    "x509Certificates.value": MAX_BINARY,
    "employeeNumber": MAX_EMPLOYEE_NUMBER,
    "department": MAX_DEPARTMENT,
}


def _check_texts(document: dict, maximum: int) -> None:
    """Every string of ``document`` within its bound, every list within ``maximum`` values."""
    stack: list[tuple[str, Any]] = []
    for key, value in document.items():
        if key == ENTERPRISE_SCHEMA and isinstance(value, dict):
            stack.extend(value.items())
        elif key != "schemas":
            stack.append((key, value))
    while stack:
        label, item = stack.pop()
        if isinstance(item, str):
            _check_length(label, item, _TEXT_LIMITS.get(label, MAX_TEXT))
        elif isinstance(item, dict):
            stack.extend((f"{label}.{key}", value) for key, value in item.items())
        elif isinstance(item, list):
            if len(item) > maximum:
                raise errors.invalid_value(
                    f"{label} holds {len(item)} values; a user may hold at most {maximum}."
                )
            stack.extend((label, entry) for entry in item)


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
    _check_texts(document, max_multi_valued())
    # The work email is stored lower-cased, which can lengthen it ("İ" lowers to 2 characters).
    _check_length(WORK_EMAIL_PATH, work_email(document), MAX_EMAIL)


def _check_emails(document: dict) -> None:
    """Every work email an address, also in the lower-cased form the apply job validates and
    stores (lower-casing can make an internationalised domain invalid). Other emails are only
    kept: Entra's default mappings send proxyAddresses ("SMTP:alice@contoso.com") as
    ``emails[type eq "other"]``."""
    for entry in document.get("emails") or []:
        if (entry.get("type") or "").lower() != "work" or not entry.get("value"):
            continue
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
    except InvalidPhoneNumber:
        # The guidance once: the library's own message repeats the number and the example.
        raise errors.invalid_value(
            f"{MOBILE_PATH} {mobile!r} is not a valid mobile number. Use the "
            f"international format with the country code, e.g. {EXAMPLE_E164}."
        ) from None


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


def validate_group_document(document: dict) -> None:
    name = document.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise errors.invalid_value("displayName is required for a group.")
    _check_length("displayName", name, MAX_DISPLAY_NAME)
    _check_length("externalId", document.get("externalId"), MAX_EXTERNAL_ID)
    if document.get("externalId") == "":
        raise errors.invalid_value("externalId must not be empty.")
