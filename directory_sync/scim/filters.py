"""The SCIM filters Entra ID sends, translated to indexed ORM lookups — and nothing else.

Entra only uses ``eq`` joined by ``and`` with double-quoted values (entra-contract.md #9). A
small strict parser is safer than scim2-filter-parser here: that one silently drops terms on
unmapped attributes (design.md §5), which widens a lookup to someone else's record. Every term
is either translated or refused with ``400 invalidFilter`` naming the problem; terms are never
dropped. Attribute names and operators are case-insensitive (RFC 7644 §3.4.2.2); ``userName``
compares case-insensitively, ``externalId`` and ``id`` case-exactly.
"""

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q

from ..models import DirectoryMembership
from ..text import unstorable_text
from . import errors
from .constants import ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA
from .documents import UNSTORABLE_DETAIL

MAX_FILTER_LENGTH = 2000
MAX_TERMS = 10

_CORE_PREFIXES = (USER_SCHEMA.lower() + ":", GROUP_SCHEMA.lower() + ":")
_ENTERPRISE_PREFIX = ENTERPRISE_SCHEMA.lower() + ":"
_WORK_EMAIL_RE = re.compile(r'^emails\[\s*type\s+eq\s+"work"\s*\]\.value$', re.I)


@dataclass(frozen=True)
class Term:
    attribute: str
    operator: str
    value: str


def _none_match() -> Q:
    return Q(pk__in=[])


def _uuid_q(field: str, value: str) -> Q:
    # An id that is not a UUID cannot be one of ours: it matches nothing (not an error, so
    # Entra's lookups of foreign ids answer an empty list as it expects).
    try:
        return Q(**{field: uuid.UUID(value)})
    except ValueError:
        return _none_match()


def _members_q(value: str) -> Q:
    try:
        user_id = uuid.UUID(value)
    except ValueError:
        return _none_match()
    return Q(
        Exists(
            DirectoryMembership.objects.filter(
                group_record=OuterRef("pk"),
                user_record__scim_id=user_id,
                user_record__deleted_at__isnull=True,
            )
        )
    )


_USER_ATTRIBUTES: dict[str, Callable[[str], Q]] = {
    "username": lambda v: Q(user_name_key=v.casefold()),
    "externalid": lambda v: Q(external_id=v),
    "id": lambda v: _uuid_q("scim_id", v),
    "displayname": lambda v: Q(display_name__iexact=v),
    # Only the work email is indexed (work_email); Entra only ever writes work emails.
    "emails.value": lambda v: Q(work_email=v.lower()),
    'emails[type eq "work"].value': lambda v: Q(work_email=v.lower()),
    "manager": lambda v: _uuid_q("manager_scim_id", v),
    "manager.value": lambda v: _uuid_q("manager_scim_id", v),
}
_GROUP_ATTRIBUTES: dict[str, Callable[[str], Q]] = {
    "displayname": lambda v: Q(display_name__iexact=v),
    "externalid": lambda v: Q(external_id=v),
    "id": lambda v: _uuid_q("scim_id", v),
    "members": _members_q,
    "members.value": _members_q,
}
_SUPPORTED = {
    "User": 'userName, externalId, id, displayName, emails[type eq "work"].value, emails.value, '
    "manager",
    "Group": "displayName, externalId, id, members",
}


def _tokenize(text: str) -> list[tuple[str, str]]:
    """Split into ("word", ...), ("string", ...) tokens; brackets stay inside their word."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise errors.invalid_filter("Unterminated string in the filter.")
            try:
                tokens.append(("string", json.loads(text[i : j + 1])))
            except ValueError:
                raise errors.invalid_filter(f"Invalid string {text[i : j + 1]} in the filter.")
            i = j + 1
            continue
        if char in "()":
            raise errors.invalid_filter(
                "Parentheses are not supported in filters; use terms joined by 'and'."
            )
        j = i
        depth = 0
        while j < n and (depth or not text[j].isspace()) and (depth or text[j] not in '()"'):
            if text[j] == "[":
                depth += 1
            elif text[j] == "]":
                depth -= 1
                if depth < 0:
                    raise errors.invalid_filter("Unbalanced ']' in the filter.")
            elif text[j] == '"' and depth:
                # A quoted value inside a value filter, e.g. emails[type eq "work"].
                k = j + 1
                while k < n and text[k] != '"':
                    k += 2 if text[k] == "\\" else 1
                j = k
            j += 1
        if depth:
            raise errors.invalid_filter("Unbalanced '[' in the filter.")
        tokens.append(("word", text[i:j]))
        i = j
    return tokens


def parse(text: str) -> list[Term]:
    """Parse ``attr eq "value" [and attr eq "value"]...`` strictly."""
    if len(text) > MAX_FILTER_LENGTH:
        raise errors.invalid_filter(f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
    # NUL (raw "%00" or a "\u0000" escape) and lone surrogates (a "\ud800" escape) cannot
    # even be sent to the database: a 500 before (found by tests/hardening/test_scim_fuzz.py).
    # No record can hold such a value, so the value is what is invalid, as in a body.
    if unstorable_text(text):
        raise errors.invalid_value(f"The filter {UNSTORABLE_DETAIL}.")
    tokens = _tokenize(text)
    if any(unstorable_text(token) for _kind, token in tokens):
        raise errors.invalid_value(f"The filter {UNSTORABLE_DETAIL}.")
    if not tokens:
        raise errors.invalid_filter("The filter is empty.")
    terms: list[Term] = []
    i = 0
    while True:
        if len(tokens) - i < 3:
            raise errors.invalid_filter(
                'Incomplete filter term: expected <attribute> eq "<value>".'
            )
        (kind_a, attribute), (kind_o, operator), (kind_v, value) = tokens[i : i + 3]
        if kind_a != "word":
            raise errors.invalid_filter(
                f"Expected an attribute name, found the string {attribute!r}."
            )
        if attribute.lower() in ("not", "and", "or"):
            raise errors.invalid_filter(
                f"'{attribute}' is not supported here; only 'eq' and 'and'."
            )
        if kind_o != "word" or operator.lower() != "eq":
            raise errors.invalid_filter(
                f"Operator {operator!r} is not supported; only 'eq' (joined by 'and')."
            )
        if kind_v != "string":
            raise errors.invalid_filter(
                f"The value compared to {attribute!r} must be a double-quoted string."
            )
        terms.append(Term(attribute, "eq", value))
        i += 3
        if i == len(tokens):
            break
        kind, word = tokens[i]
        if kind != "word" or word.lower() != "and":
            raise errors.invalid_filter(
                f"{word!r} is not supported between filter terms; only 'and'."
                if kind == "word" and word.lower() == "or"
                else f"Unexpected {word!r} in the filter; terms are joined by 'and'."
            )
        i += 1
        if len(terms) >= MAX_TERMS:
            raise errors.invalid_filter(f"A filter has at most {MAX_TERMS} terms.")
    return terms


def _canonical_attribute(attribute: str) -> str:
    lowered = attribute.lower()
    for prefix in _CORE_PREFIXES:
        if lowered.startswith(prefix):
            lowered = lowered[len(prefix) :]
            break
    else:
        if lowered.startswith(_ENTERPRISE_PREFIX):
            lowered = lowered[len(_ENTERPRISE_PREFIX) :]
            return lowered if lowered.startswith("manager") else "urn:" + lowered
    if _WORK_EMAIL_RE.match(lowered):
        return 'emails[type eq "work"].value'
    return lowered


def filter_q(text: str, *, resource_type: str) -> Q:
    """The Q object for ``text`` on records of ``resource_type`` ("User" or "Group")."""
    attributes = _USER_ATTRIBUTES if resource_type == "User" else _GROUP_ATTRIBUTES
    query = Q()
    for term in parse(text):
        build = attributes.get(_canonical_attribute(term.attribute))
        if build is None:
            raise errors.invalid_filter(
                f"Filtering {resource_type}s on {term.attribute!r} is not supported. "
                f"Supported: {_SUPPORTED[resource_type]} (with 'eq', joined by 'and')."
            )
        query &= build(term.value)
    return query


@dataclass(frozen=True)
class Lookup:
    """A one-term filter on a single indexed column, answered by ``queries.records_lookup``.

    ``value`` None: the filter can match nothing (an ``id`` that is not a UUID). ``unique``:
    at most one live record can match (a unique constraint), so no COUNT is needed.
    """

    column: str
    value: object
    unique: bool


_USER_LOOKUPS: dict[str, Callable[[str], Lookup]] = {
    "username": lambda v: Lookup("user_name_key", v.casefold(), True),
    "externalid": lambda v: Lookup("external_id", v, True),
    "id": lambda v: Lookup("scim_id", _uuid_or_none(v), True),
}
_GROUP_LOOKUPS: dict[str, Callable[[str], Lookup]] = {
    "externalid": lambda v: Lookup("external_id", v, True),
    "id": lambda v: Lookup("scim_id", _uuid_or_none(v), True),
    "displayname": lambda v: Lookup("display_name_iexact", v, False),
}


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def filter_lookup(text: str, *, resource_type: str) -> Lookup | None:
    """The single-column lookup ``text`` is (Entra's per-user and per-group lookups), or None
    when it needs the general ``filter_q`` path. Raises ``invalidFilter`` like ``filter_q``."""
    terms = parse(text)
    if len(terms) != 1:
        return None
    lookups = _USER_LOOKUPS if resource_type == "User" else _GROUP_LOOKUPS
    build = lookups.get(_canonical_attribute(terms[0].attribute))
    return build(terms[0].value) if build is not None else None
