"""E.164 normalisation of mobile numbers, with the `phonenumbers` library."""

import phonenumbers
from django.utils.translation import gettext, gettext_noop

EXAMPLE_E164 = "+966512345678"


class InvalidPhoneNumber(ValueError):
    """The text is not a valid phone number (or lacks a country code and no default is set).

    Kept as msgid and parameters: ``str()`` reads it in the active language, and the sync log
    stores the pair to show it in its reader's language (directory_sync/notes.py)."""

    def __init__(self, msgid: str, **params):
        self.msgid, self.params = msgid, params
        super().__init__(msgid % params if params else msgid)

    def __str__(self) -> str:
        text = gettext(self.msgid)
        return text % self.params if self.params else text


def phone_to_e164(raw: str, *, default_country: str | None = None) -> str:
    """Return ``raw`` as E.164, e.g. ``'+966 51 234 5678'`` → ``'+966512345678'``.

    Without a leading ``+`` the number needs ``default_country`` (ISO 3166 alpha-2, e.g.
    ``'SA'``); the product document asks admins to keep the country code in Entra ID.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber(gettext_noop("The phone number is empty."))
    region = (default_country or "").upper() or None
    if not text.startswith("+") and text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+") and region is None:
        raise InvalidPhoneNumber(
            gettext_noop(
                "'%(raw)s' has no country code; use the international format, e.g. %(example)s."
            ),
            raw=raw,
            example=EXAMPLE_E164,
        )
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(
            gettext_noop("'%(raw)s' is not a phone number (%(error)s); expected e.g. %(example)s."),
            raw=raw,
            error=exc._msg,
            example=EXAMPLE_E164,
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(
            gettext_noop("'%(raw)s' is not a valid phone number; expected e.g. %(example)s."),
            raw=raw,
            example=EXAMPLE_E164,
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_or_none(raw: str | None, *, default_country: str | None = None) -> str | None:
    """Like :func:`phone_to_e164` but ``None`` for an empty or invalid number."""
    if not raw:
        return None
    try:
        return phone_to_e164(raw, default_country=default_country)
    except InvalidPhoneNumber:
        return None
