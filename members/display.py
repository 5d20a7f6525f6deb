"""How member data is written for people, the same on every page and in both languages.

- Departments: a full path joins names with :data:`DEPARTMENT_PATH_SEPARATOR` (U+203A is
  bidi-mirrored, so an Arabic page shows the path right to left with the arrow turned). Two
  departments may share a name, so choices always name the full path.
- Phone numbers: ``+966…`` in Arabic text would show its plus sign on the wrong side; every
  number is isolated in ``<bdi dir="ltr">`` (the ``phone_ltr`` template filter).
- Countries: names from CLDR (Babel) in the page's language, never a hand list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from babel import Locale, UnknownLocaleError
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language

from .models import Department

DEPARTMENT_PATH_SEPARATOR = " › "

# A "+" followed by a digit, then digits and the spaces, dashes, dots and brackets people type
# inside numbers, ending on a digit.
_PHONE_RE = re.compile(r"\+\d(?:[\d\s().-]*\d)?")


def department_path_label(names: Iterable[str]) -> str:
    """``["Head Office", "Engineering"]`` → ``"Head Office › Engineering"``."""
    return DEPARTMENT_PATH_SEPARATOR.join(names)


def department_labels(departments: Iterable[Department]) -> dict[int, str]:
    """The full path of each department, reading their organizations' departments once."""
    departments = list(departments)
    organization_ids = {d.organization_id for d in departments}
    if not organization_ids:
        return {}
    nodes = {
        pk: (name, parent_id)
        for pk, name, parent_id in Department.objects.filter(
            organization_id__in=organization_ids
        ).values_list("id", "name", "parent_id")
    }
    labels = {}
    for department in departments:
        names, node, seen = [], department.pk, set()
        while node is not None and node in nodes and node not in seen:
            seen.add(node)
            name, node = nodes[node]
            names.append(name)
        labels[department.pk] = department_path_label(reversed(names))
    return labels


def phone_ltr(value: object, *, autoescape: bool = True) -> SafeString | str:
    """``value`` (a phone number, or a text that contains some) with every ``+…`` number
    isolated left to right: ``<bdi dir="ltr">+966 51 234 5678</bdi>``."""
    if value is None or value == "":
        return "" if value is None else value
    text = conditional_escape(value) if autoescape else str(value)
    return mark_safe(_PHONE_RE.sub(lambda m: f'<bdi dir="ltr">{m.group(0)}</bdi>', text))


def isolate(value: object, *, autoescape: bool = True) -> SafeString | str:
    """``<bdi>value</bdi>`` (the text keeps its own direction inside the sentence)."""
    if value is None or value == "":
        return ""
    text = conditional_escape(value) if autoescape else str(value)
    return mark_safe(f"<bdi>{text}</bdi>")


def _territories(language: str | None) -> dict[str, str]:
    code = (language or "en").replace("-", "_")
    try:
        return Locale.parse(code).territories
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en").territories


def country_name(code: str | None, *, language: str | None = None) -> str:
    """The name of the ISO 3166 alpha-2 country ``code`` in ``language`` (the active one by
    default); a value that is no country code (Entra's country attribute is free text) as is."""
    value = (code or "").strip()
    if len(value) != 2 or not value.isalpha():
        return value
    return _territories(language or get_language()).get(value.upper(), value)


def country_names(codes: Iterable[str], *, language: str | None = None) -> dict[str, str]:
    """``{code: name}`` for ``codes`` in ``language`` (the active one by default)."""
    territories = _territories(language or get_language())
    return {code: territories.get(code, code) for code in codes}
