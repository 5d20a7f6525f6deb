"""SCIM filters (RFC 7644 §3.4.2.2) translated into one database query on directory records.

scim2-models parses the filter (``ScimFilter``: the grammar, typed values) and resolves each
attribute against the advertised schemas (its canonical name, type, ``caseExact``). Every term
is translated or refused with ``400 invalidFilter`` naming the problem; terms are never dropped
(design.md §5). Entra's lookups — ``userName``/``externalId``/``id``/``displayName eq``, the
work email, ``manager eq``, ``members eq`` — use the indexed columns as before; any other
attribute is read from the stored document (``document``), with PostgreSQL's jsonb operators or
SQLite's JSON1 functions side by side in ``store.filter_sql``. Absent attributes compare false, so
``not (title eq "x")`` matches users without a title.
"""

import datetime
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Exists, F, OrderBy, OuterRef, Q
from django.db.models.functions import Lower
from scim2_models import EnterpriseUser, Group, InvalidFilterException, ScimFilter, User
from scim2_models.path import (
    AttrPath,
    Comparison,
    LogicalExpr,
    Not,
    Present,
    ValuePath,
)

from ..models import DirectoryMembership
from ..store.filter_sql import FilterSql
from ..text import unstorable_text
from . import discovery, errors
from .constants import ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA
from .document_checks import UNSTORABLE_DETAIL

MAX_FILTER_LENGTH = 2000
MAX_TERMS = 10

_USER_RESOLVER = ScimFilter[User[EnterpriseUser]]("id pr")
_GROUP_RESOLVER = ScimFilter[Group]("id pr")
_SCHEMA_PREFIXES = (USER_SCHEMA + ":", GROUP_SCHEMA + ":")
_DATETIME_LOOKUPS = {"eq": "exact", "gt": "gt", "ge": "gte", "lt": "lt", "le": "lte"}


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


def _walk(node):
    yield node
    for child in (
        node.terms
        if isinstance(node, LogicalExpr)
        else (node.expr,)
        if isinstance(node, Not)
        else (node.val_filter,)
        if isinstance(node, ValuePath)
        else ()
    ):
        yield from _walk(child)


def parse(text: str):
    """The filter's syntax tree (scim2-models), or ``invalidFilter`` naming the problem."""
    if len(text) > MAX_FILTER_LENGTH:
        raise errors.invalid_filter(f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
    # NUL (raw "%00" or a "\u0000" escape) and lone surrogates (a "\ud800" escape) cannot
    # even be sent to the database: a 500 before (found by tests/hardening/test_scim_fuzz.py).
    # No record can hold such a value, so the value is what is invalid, as in a body.
    if unstorable_text(text):
        raise errors.invalid_value(f"The filter {UNSTORABLE_DETAIL}.")
    if not text.strip():
        raise errors.invalid_filter("The filter is empty.")
    try:
        tree = ScimFilter(text).ast
    except (InvalidFilterException, ValueError) as error:
        raise errors.invalid_filter(
            f"The filter is not valid SCIM filter syntax ({error}): expected "
            '<attribute> <operator> <value>, string values double-quoted ("..."), '
            "terms joined by and/or, not (...) and parentheses."
        )
    nodes = list(_walk(tree))
    values = [n.value for n in nodes if isinstance(n, Comparison)]
    if any(isinstance(v, str) and unstorable_text(v) for v in values):
        raise errors.invalid_value(f"The filter {UNSTORABLE_DETAIL}.")
    if sum(isinstance(n, Comparison | Present) for n in nodes) > MAX_TERMS:
        raise errors.invalid_filter(f"A filter has at most {MAX_TERMS} terms.")
    return tree


@dataclass(frozen=True)
class _Attribute:
    """A resolved attribute: its canonical path in the stored document and how it compares."""

    name: str  # canonical, as written in errors (e.g. "name.givenName")
    path: tuple[str, ...]  # keys in ``document``
    sub: str | None  # a multi-valued attribute's compared sub-attribute
    kind: str  # "string", "boolean", "datetime", "complex"
    case_exact: bool
    multivalued: bool


def _filterable() -> set[tuple[str, ...]]:
    """(schema, attribute[, sub-attribute]) lower-cased, for what /Schemas advertises and
    returns: a ``returned: never`` attribute (``password``) must not be probed by filters."""
    names: set[tuple[str, ...]] = set()
    for schema in discovery.schemas_getter():
        for attribute in schema["attributes"]:
            if attribute.get("returned") == "never":
                continue
            names.add((schema["id"], attribute["name"].lower()))
            for sub in attribute.get("subAttributes") or ():
                if sub.get("returned") != "never":
                    names.add((schema["id"], attribute["name"].lower(), sub["name"].lower()))
    return names


_FILTERABLE = _filterable()


def _resolve(attr_path: AttrPath, resource_type: str, *, for_comparison: bool) -> _Attribute:
    resolver = _USER_RESOLVER if resource_type == "User" else _GROUP_RESOLVER
    try:
        binding = (
            resolver.resolve_comparison(attr_path, strict=True)
            if for_comparison
            else resolver.resolve(attr_path, strict=True)
        )
    except (InvalidFilterException, ValueError):
        binding = None
    if binding is None:
        raise _unsupported(attr_path, resource_type)
    urn = binding.urn
    schema, _sep, name = urn.rpartition(":")
    parts = tuple(name.split("."))
    if (schema, *(part.lower() for part in parts)) not in _FILTERABLE and parts[0] not in (
        "externalId",
        "id",
    ):
        raise _unsupported(attr_path, resource_type)
    path = (schema, *parts) if schema == ENTERPRISE_SCHEMA else parts
    target = binding.sub_field_type if binding.sub_field_name else binding.field_type
    kind = (
        "boolean"
        if target is bool
        else "datetime"
        if target is datetime.datetime
        else "complex"
        if isinstance(target, type) and hasattr(target, "model_fields")
        else "string"
    )
    case_exact = bool(binding.case_exact)
    if binding.is_multivalued:
        # The compared sub-attribute is read from each element of the array at ``path``.
        sub = parts[1] if len(parts) > 1 else None
        return _Attribute(name, path[: len(path) - len(parts) + 1], sub, kind, case_exact, True)
    return _Attribute(name, path, None, kind, case_exact, False)


class _NotAnAttribute(errors.ScimError):
    """The filter names an attribute the resource type does not have (``invalidFilter``)."""


def _unsupported(attr_path: AttrPath, resource_type: str) -> errors.ScimError:
    return _NotAnAttribute(
        f"Filtering {resource_type}s on {str(attr_path)!r} is not supported: it is not an "
        "attribute of the advertised schemas (see /Schemas).",
        scim_type="invalidFilter",
    )


def _compare_sql(sql: FilterSql, expr: str, params: list, attribute: _Attribute, op, value):
    """``expr <op> value`` as SQL that is never NULL (an absent attribute compares false)."""
    if value is None:
        # `eq null` is "not present", `ne null` "present" (RFC 7644 §3.4.2.2).
        if op.value not in ("eq", "ne"):
            raise errors.invalid_filter(
                f"null can only be compared with eq or ne ({attribute.name})."
            )
        return sql.null_compare(expr, params, absent=op.value == "eq")
    if attribute.kind == "boolean":
        if not isinstance(value, bool) or op.value not in ("eq", "ne"):
            raise errors.invalid_filter(
                f"{attribute.name} is a boolean: compare it with eq or ne to true or false."
            )
        return sql.boolean_compare(expr, params, value, negate=op.value == "ne")
    if attribute.kind != "string":
        raise errors.invalid_filter(
            f"Filtering on {attribute.name!r} with {op.value} is not supported."
        )
    if not isinstance(value, str):
        raise errors.invalid_filter(
            f"The value compared to {attribute.name!r} must be a double-quoted string."
        )
    return sql.string_compare(expr, params, op.value, value, case_exact=attribute.case_exact)


def _present_sql(sql: FilterSql, expr: str, params: list, attribute: _Attribute):
    return sql.present(expr, params, string=attribute.kind == "string")


def _element_sql(sql: FilterSql, node, outer: AttrPath, resource_type: str):
    """SQL for a value filter's node on one element (alias ``_ELEMENT``) of ``outer``."""
    if isinstance(node, LogicalExpr):
        parts = [_element_sql(sql, term, outer, resource_type) for term in node.terms]
        return sql.combine(node.op.value, parts)
    if isinstance(node, Not):
        return sql.negate(_element_sql(sql, node.expr, outer, resource_type))
    if isinstance(node, Comparison | Present):
        if node.attr_path.sub_attr or node.attr_path.uri:
            raise errors.invalid_filter(
                f"In {outer.attr}[...], name a sub-attribute of {outer.attr} ({node.attr_path})."
            )
        attribute = _resolve(
            AttrPath(outer.attr, node.attr_path.attr, outer.uri),
            resource_type,
            for_comparison=isinstance(node, Comparison),
        )
        expr, params = sql.element_text(attribute.sub or node.attr_path.attr)
        if isinstance(node, Present):
            return _present_sql(sql, expr, params, attribute)
        return _compare_sql(sql, expr, params, attribute, node.op, node.value)
    raise errors.invalid_filter(f"Value filters cannot be nested ({outer.attr}).")


def _canonical(attr_path: AttrPath) -> str:
    """Lower-cased ``attr[.sub]`` with the core schema URN dropped; the enterprise URN kept."""
    uri = (attr_path.uri or "").lower()
    name = attr_path.attr.lower() + (f".{attr_path.sub_attr.lower()}" if attr_path.sub_attr else "")
    if uri and uri + ":" not in {p.lower() for p in _SCHEMA_PREFIXES}:
        return f"{uri}:{name}"
    return name


_ENTERPRISE_MANAGER = {
    f"{ENTERPRISE_SCHEMA.lower()}:manager",
    f"{ENTERPRISE_SCHEMA.lower()}:manager.value",
    # Entra's reference check writes it unqualified.
    "manager",
    "manager.value",
}
# Entra's equality lookups, answered from the indexed columns.
_USER_EQ: dict[str, Callable[[str], Q]] = {
    "username": lambda v: Q(user_name_key=v.casefold()),
    "externalid": lambda v: Q(external_id=v),
    "id": lambda v: _uuid_q("scim_id", v),
    "displayname": lambda v: Q(display_name__iexact=v),
    **dict.fromkeys(_ENTERPRISE_MANAGER, lambda v: _uuid_q("manager_scim_id", v)),
}
_GROUP_EQ: dict[str, Callable[[str], Q]] = {
    "displayname": lambda v: Q(display_name__iexact=v),
    "externalid": lambda v: Q(external_id=v),
    "id": lambda v: _uuid_q("scim_id", v),
    "members": _members_q,
    "members.value": _members_q,
}
# Only eq/ne (and pr for id) on references: they are ids, not text.
_REFERENCES = {"id", "members", "members.value", "manager", "manager.value"}
# Other operators on the same attributes, on the column rather than the document.
_COLUMNS = {"username": "user_name_key", "externalid": "external_id", "displayname": "display_name"}


def _work_email(node: ValuePath) -> str | None:
    """The address of Entra's ``emails[type eq "work"].value eq "x"``, else None."""
    if _canonical(node.attr_path) != "emails" or not isinstance(node.val_filter, LogicalExpr):
        return None
    terms = node.val_filter.terms
    if node.val_filter.op.value != "and" or len(terms) != 2:
        return None
    if not all(isinstance(t, Comparison) and t.op.value == "eq" for t in terms):
        return None
    by_name = {_canonical(t.attr_path): t.value for t in terms}
    work, value = by_name.get("type"), by_name.get("value")
    if isinstance(work, str) and work.lower() == "work" and isinstance(value, str):
        return value
    return None


def _translate(sql: FilterSql, node, resource_type: str, foreign: dict | None = None) -> Q:
    """``foreign`` None: a term on an attribute ``resource_type`` does not have is refused;
    else (a search across resource types) it is an attribute without a value there and the
    refusal is kept in ``foreign`` under the term's id."""
    if isinstance(node, LogicalExpr):
        parts = [_translate(sql, term, resource_type, foreign) for term in node.terms]
        query = parts[0]
        for part in parts[1:]:
            query = query & part if node.op.value == "and" else query | part
        return query
    if isinstance(node, Not):
        return ~_translate(sql, node.expr, resource_type, foreign)
    try:
        return _term(sql, node, resource_type)
    except _NotAnAttribute as refusal:
        if foreign is None:
            raise
        foreign[id(node)] = refusal
        return _absent(node)


def _absent(node) -> Q:
    """A term on an attribute without a value, as ``_compare_sql`` and ``_present_sql`` judge
    it: only ``ne <value>`` and ``eq null`` hold (RFC 7644 §3.4.3: "as if there is no
    attribute value")."""
    if isinstance(node, Comparison) and (node.op.value == "ne") != (node.value is None):
        return Q(pk__isnull=False)
    return _none_match()


def _term(sql: FilterSql, node, resource_type: str) -> Q:
    """One comparison, presence test or value filter."""
    if isinstance(node, ValuePath):
        if resource_type == "User" and (address := _work_email(node)) is not None:
            return Q(work_email=address.lower())
        if resource_type == "Group" and _canonical(node.attr_path) == "members":
            term = node.val_filter
            if (
                isinstance(term, Comparison)
                and _canonical(term.attr_path) == "value"
                and term.op.value == "eq"
                and isinstance(term.value, str)
            ):
                return _members_q(term.value)
            raise errors.invalid_filter(
                'Groups filter their members only with members[value eq "<user id>"].'
            )
        attribute = _resolve(node.attr_path, resource_type, for_comparison=False)
        if not attribute.multivalued:
            raise errors.invalid_filter(
                f"{node.attr_path}[...] selects values of a multi-valued attribute; "
                f"{node.attr_path} holds one value."
            )
        condition, params = _element_sql(sql, node.val_filter, node.attr_path, resource_type)
        return sql.exists_q(attribute.path, condition, params)
    name = _canonical(node.attr_path)
    eq_lookups = _USER_EQ if resource_type == "User" else _GROUP_EQ
    if isinstance(node, Comparison) and node.op.value == "eq" and isinstance(node.value, str):
        if (build := eq_lookups.get(name)) is not None:
            return build(node.value)
    if name in _REFERENCES:
        if name != "id" and name not in eq_lookups:
            raise _unsupported(node.attr_path, resource_type)
        if isinstance(node, Present) and name == "id":
            return Q(pk__isnull=False)
        if isinstance(node, Comparison) and node.op.value == "ne" and isinstance(node.value, str):
            if (build := eq_lookups.get(name)) is not None:
                return ~build(node.value)
        raise errors.invalid_filter(
            f"{node.attr_path} is a reference: filter it with eq or ne and an id."
        )
    if name in ("meta.created", "meta.lastmodified"):
        return _datetime_q(node, name)
    if name == "active" and resource_type == "User" and isinstance(node, Comparison):
        if not isinstance(node.value, bool) or node.op.value not in ("eq", "ne"):
            raise errors.invalid_filter(
                "active is a boolean: compare it with eq or ne to true or false."
            )
        return Q(active=node.value) if node.op.value == "eq" else ~Q(active=node.value)
    attribute = _resolve(node.attr_path, resource_type, for_comparison=isinstance(node, Comparison))
    if name in _COLUMNS:
        expr = sql.column(_COLUMNS[name])
        params: list = []
        if name == "username" and isinstance(node, Comparison) and isinstance(node.value, str):
            # user_name_key is the case-folded userName.
            node = Comparison(node.attr_path, node.op, node.value.casefold())
    elif attribute.multivalued:
        expr, params = sql.element_text(attribute.sub)
        if isinstance(node, Present):
            condition, params = _present_sql(sql, expr, params, attribute)
        else:
            condition, params = _compare_sql(sql, expr, params, attribute, node.op, node.value)
        return sql.exists_q(attribute.path, condition, params)
    else:
        if attribute.kind == "complex":
            if isinstance(node, Present):
                expr, params = sql.text(attribute.path)
                return sql.condition_q(*sql.null_compare(expr, params, absent=False))
            raise errors.invalid_filter(
                f"{node.attr_path} is a complex attribute: compare one of its sub-attributes."
            )
        expr, params = sql.text(attribute.path)
    if isinstance(node, Present):
        return sql.condition_q(*_present_sql(sql, expr, params, attribute))
    return sql.condition_q(*_compare_sql(sql, expr, params, attribute, node.op, node.value))


def _datetime_q(node, name: str) -> Q:
    column = "created_at" if name == "meta.created" else "updated_at"
    if isinstance(node, Present):
        return Q(**{f"{column}__isnull": False})
    operator = node.op.value
    if operator not in _DATETIME_LOOKUPS and operator != "ne":
        raise errors.invalid_filter(
            f"{node.attr_path} is a date-time: compare it with eq, ne, gt, ge, lt or le."
        )
    try:
        moment = datetime.datetime.fromisoformat(str(node.value).replace("Z", "+00:00"))
    except ValueError:
        raise errors.invalid_filter(
            f"The value compared to {node.attr_path} must be an RFC 3339 date-time in quotes."
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    if operator == "ne":
        return ~Q(**{column: moment})
    return Q(**{f"{column}__{_DATETIME_LOOKUPS[operator]}": moment})


def filter_q(text: str, *, resource_type: str) -> Q:
    """The Q object for ``text`` on records of ``resource_type`` ("User" or "Group")."""
    return _translate(FilterSql(), parse(text), resource_type)


def filter_q_across(text: str, resource_types: tuple[str, ...]) -> Q:
    """The Q object for ``text`` on records of any of ``resource_types`` (a search from the
    service root, RFC 7644 §3.4.3): each type judges the terms on attributes it does not have
    as attributes without a value; a term no type has is refused as ``filter_q`` refuses it."""
    tree, sql = parse(text), FilterSql()
    query = _none_match()
    refused: list[dict] = []
    for resource_type in resource_types:
        foreign: dict = {}
        query |= Q(resource_type=resource_type) & _translate(sql, tree, resource_type, foreign)
        refused.append(foreign)
    for term_id, refusal in refused[0].items():
        if all(term_id in foreign for foreign in refused[1:]):
            raise refusal
    return query


# Sorting on the indexed columns where there is one; userName sorts by its case-folded key.
_SORT_COLUMNS = {
    "username": ("user_name_key", False),
    "externalid": ("external_id", False),
    "id": ("scim_id", False),
    "displayname": ("display_name", True),
    "active": ("active", False),
    "meta.created": ("created_at", False),
    "meta.lastmodified": ("updated_at", False),
}


def ordering(sort_by: str, sort_order: str | None, *, resource_type: str) -> list[OrderBy]:
    """``ORDER BY`` for ``sortBy``/``sortOrder`` (RFC 7644 §3.4.2.3): the attribute, case-folded
    unless caseExact, absent values last, then the primary key so pages never overlap or skip."""
    order = (sort_order or "ascending").lower()
    if order not in ("ascending", "descending"):
        raise errors.invalid_value(
            f"sortOrder must be 'ascending' or 'descending', not {sort_order!r}."
        )
    try:
        attr_path = AttrPath(*_split_attr_path(sort_by.strip()))
    except ValueError:
        raise errors.invalid_value(f"sortBy {sort_by!r} is not an attribute path.")
    name = _canonical(attr_path)
    if name in _SORT_COLUMNS:
        column, fold = _SORT_COLUMNS[name]
        expression = Lower(column) if fold else F(column)
    elif resource_type == "Group":
        raise errors.invalid_value(f"Groups cannot be sorted by {sort_by!r}.")
    else:
        try:
            attribute = _resolve(attr_path, resource_type, for_comparison=True)
        except errors.ScimError as error:
            raise errors.invalid_value(f"sortBy: {error.detail}")
        if attribute.kind not in ("string", "boolean"):
            raise errors.invalid_value(f"sortBy {sort_by!r} is not a single value to sort by.")
        path = attribute.path
        if attribute.multivalued:
            # RFC 7644 §3.4.2.3 sorts by the primary value; Entra keeps the primary first.
            path = (*path, 0, attribute.sub or "value")
        expression = FilterSql().sort_key(
            path, fold=not attribute.case_exact and attribute.kind == "string"
        )
    descending = order == "descending"
    return [
        expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True),
        F("pk").asc(),
    ]


def _split_attr_path(text: str) -> tuple[str, str | None, str | None]:
    uri = None
    if text.lower().startswith("urn:"):
        uri, _sep, text = text.rpartition(":")
    attr, _sep, sub = text.partition(".")
    return attr, sub or None, uri


@dataclass(frozen=True)
class Lookup:
    """A one-term filter on a single indexed column, answered by ``store.reads.records_lookup``.

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


# Entra's lookups, read without the general parser: they are most of the traffic (the parser
# costs about four times as much).
_ENTRA_LOOKUP = re.compile(
    r"\s*(?:urn:ietf:params:scim:schemas:core:2\.0:(?:User|Group):)?([a-z]+)\s+eq\s+"
    r'("(?:[^"\\]|\\.)*")\s*',
    re.IGNORECASE,
)


def filter_lookup(text: str, *, resource_type: str) -> Lookup | None:
    """The single-column lookup ``text`` is (Entra's per-user and per-group lookups), or None
    when it needs the general ``filter_q`` path. Raises ``invalidFilter`` like ``filter_q``."""
    lookups = _USER_LOOKUPS if resource_type == "User" else _GROUP_LOOKUPS
    match = _ENTRA_LOOKUP.fullmatch(text) if len(text) <= MAX_FILTER_LENGTH else None
    if match is not None and (build := lookups.get(match[1].lower())) is not None:
        try:
            value = json.loads(match[2])
        except ValueError:
            value = None
        if isinstance(value, str) and not unstorable_text(value):
            return build(value)
    term = parse(text)
    if not isinstance(term, Comparison) or term.op.value != "eq" or not isinstance(term.value, str):
        return None
    build = lookups.get(_canonical(term.attr_path))
    return build(term.value) if build is not None else None
