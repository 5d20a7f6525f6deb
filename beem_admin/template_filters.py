"""Template filters every template has without ``{% load %}`` (``TEMPLATES`` builtins).

``when`` is the one way a date and time is shown: the first render and the live updates (the
status pages' fragments are rendered by the same templates) use it, so a page never mixes
formats. The format is the language's ``DATETIME_FORMAT`` (``beem_admin/formats/``), in the
server's time zone (``BEEM_TIME_ZONE``); the ISO timestamp is kept in ``<time datetime>``.
"""

import json
from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

register = template.Library()


def when_text(value: datetime) -> str:
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return date_format(value, "DATETIME_FORMAT")


@register.filter(is_safe=True)
def when(value, empty: str = ""):
    """``{{ run.started_at|when }}`` → ``<time datetime="2026-12-07T01:32:00+00:00">Dec. 7,
    2026, 1:32 a.m.</time>``; ``empty`` (e.g. "never") for no date."""
    if not isinstance(value, datetime):
        return empty
    return format_html('<time datetime="{}">{}</time>', value.isoformat(), when_text(value))


@register.filter
def pretty_json(text: str) -> str:
    """A JSON body indented for reading (a SCIM request or response in the request log);
    anything else (a truncated or unparseable body) as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return text
