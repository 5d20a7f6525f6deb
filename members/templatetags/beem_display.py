"""``{% load beem_display %}``: the template side of :mod:`members.display`."""

from django import template

from .. import display

register = template.Library()


@register.filter(needs_autoescape=True)
def phone_ltr(value, autoescape=True):
    """Every phone number of ``value`` left to right (``<bdi dir="ltr">``), on every page."""
    return display.phone_ltr(value, autoescape=autoescape)


@register.filter
def country_name(value):
    """An ISO country code as the country's name in the page's language."""
    return display.country_name(value)


@register.filter(needs_autoescape=True)
def isolate(value, autoescape=True):
    """``<bdi>value</bdi>``: a name or an address inside a sentence of the other direction
    keeps its own (a Latin name in Arabic text does not pull the sentence's punctuation)."""
    return display.isolate(value, autoescape=autoescape)
