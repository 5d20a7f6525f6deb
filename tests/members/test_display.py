"""members.display: one department path separator, phone numbers left to right, country names
from CLDR (Babel) in the page's language."""

import pytest
from django.template import engines
from django.utils import translation

from members import services as member_services
from members.display import (
    DEPARTMENT_PATH_SEPARATOR,
    country_name,
    department_labels,
    phone_ltr,
)


def test_a_phone_number_is_isolated_left_to_right():
    assert phone_ltr("+966512345678") == '<bdi dir="ltr">+966512345678</bdi>'
    assert phone_ltr(None) == "" and phone_ltr("") == ""
    assert phone_ltr("—") == "—"


def test_numbers_inside_a_text_are_isolated_and_the_text_is_escaped():
    text = "The mobile number +966 51 234-5678 belongs to <Sara>; 0512345678 stays."
    assert phone_ltr(text) == (
        'The mobile number <bdi dir="ltr">+966 51 234-5678</bdi> belongs to &lt;Sara&gt;; '
        "0512345678 stays."
    )


def test_the_template_filter_escapes_and_isolates():
    template = engines["django"].from_string("{% load beem_display %}{{ value|phone_ltr }}")
    assert template.render({"value": "<b>+966512345678</b>"}) == (
        '&lt;b&gt;<bdi dir="ltr">+966512345678</bdi>&lt;/b&gt;'
    )


def test_country_names_follow_the_active_language():
    assert country_name("SA", language="en") == "Saudi Arabia"
    assert country_name("sa", language="ar") == "المملكة العربية السعودية"
    with translation.override("ar"):
        assert country_name("AE") == "الإمارات العربية المتحدة"
        # Entra's country attribute is free text: a name is shown as sent.
        assert country_name("Saudi Arabia") == "Saudi Arabia"
    assert country_name("") == "" and country_name(None) == ""


@pytest.mark.django_db
def test_department_labels_name_the_full_path(organization):
    platform = member_services.department_path_ensure(
        organization=organization, path=["Head Office", "Engineering", "Platform"]
    )
    root = member_services.department_get_or_create(organization=organization, name="Sales")

    labels = department_labels([platform, root])

    assert DEPARTMENT_PATH_SEPARATOR == " › "
    assert labels == {platform.pk: "Head Office › Engineering › Platform", root.pk: "Sales"}
    assert department_labels([]) == {}


def test_isolate_keeps_a_name_in_its_own_direction():
    template = engines["django"].from_string("{% load beem_display %}{{ value|isolate }}")
    assert template.render({"value": "Nora (Beem) <x>"}) == "<bdi>Nora (Beem) &lt;x&gt;</bdi>"
    assert template.render({"value": None}) == ""
