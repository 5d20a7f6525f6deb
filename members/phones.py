"""E.164 normalisation of mobile numbers, with the `phonenumbers` library."""

import phonenumbers

EXAMPLE_E164 = "+966512345678"


class InvalidPhoneNumber(ValueError):
    """The text is not a valid phone number (or lacks a country code and no default is set)."""


def phone_to_e164(raw: str, *, default_country: str | None = None) -> str:
    """Return ``raw`` as E.164, e.g. ``'+966 51 234 5678'`` → ``'+966512345678'``.

    Without a leading ``+`` the number needs ``default_country`` (ISO 3166 alpha-2, e.g.
    ``'SA'``); the product document asks admins to keep the country code in Entra ID.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber("The phone number is empty.")
    region = (default_country or "").upper() or None
    if not text.startswith("+") and text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+") and region is None:
        raise InvalidPhoneNumber(
            f"'{raw}' has no country code; use the international format, e.g. {EXAMPLE_E164}."
        )
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(
            f"'{raw}' is not a phone number ({exc._msg}); expected e.g. {EXAMPLE_E164}."
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(
            f"'{raw}' is not a valid phone number; expected e.g. {EXAMPLE_E164}."
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
