import pytest

from members.phones import InvalidPhoneNumber, phone_or_none, phone_to_e164


def test_international_number_with_spaces_is_normalised_to_e164():
    assert phone_to_e164("+966 51 234 5678") == "+966512345678"


def test_double_zero_prefix_is_read_as_international():
    assert phone_to_e164("00966512345678") == "+966512345678"


def test_national_number_uses_the_default_country():
    assert phone_to_e164("0512345678", default_country="sa") == "+966512345678"


def test_national_number_without_default_country_is_refused_with_an_example():
    with pytest.raises(InvalidPhoneNumber, match=r"no country code.*\+966512345678"):
        phone_to_e164("0512345678")


def test_text_that_is_not_a_number_is_refused():
    with pytest.raises(InvalidPhoneNumber, match="not a phone number"):
        phone_to_e164("+call me maybe")


def test_number_with_an_impossible_length_is_refused():
    with pytest.raises(InvalidPhoneNumber, match="not a valid phone number"):
        phone_to_e164("+96651234")


def test_empty_number_is_refused():
    with pytest.raises(InvalidPhoneNumber, match="empty"):
        phone_to_e164("   ")


def test_phone_or_none_turns_invalid_input_into_none():
    assert phone_or_none("nonsense") is None
    assert phone_or_none("") is None
    assert phone_or_none("+966512345678") == "+966512345678"
