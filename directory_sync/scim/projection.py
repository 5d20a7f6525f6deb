"""``attributes`` / ``excludedAttributes`` (RFC 7644 §3.4.2.5, §3.9): the one projection of
every SCIM answer that holds Users or Groups (GET by id, lists, ``.search`` bodies, and the
POST/PUT/PATCH answers when the query parameter is given).

Rules (pinned by tests/directory_sync/scim/test_projection.py):

- Names are in attribute notation (RFC 7644 §3.10), case-insensitive: ``userName``,
  ``name.givenName``, ``emails.value`` (the sub-attribute of every entry), a core attribute
  with its schema URN (``urn:...:core:2.0:User:userName``), an extension attribute with its
  URN (``urn:...:enterprise:2.0:User:manager``), or a schema URN alone (all its attributes).
  An extension attribute named without its URN is found too (Entra writes ``manager`` so).
- ``id`` and ``schemas`` are ``returned: always``: kept whatever the lists say. ``meta`` is
  ``returned: default`` (RFC 7643 §3.1; scim2-models' ``Resource.meta``): with ``attributes``
  it comes back only when named (``meta`` or ``meta.version``); the ``ETag`` header carries
  the version anyway.
- A name of no attribute of the resource (unknown, or of the other resource type in a root
  ``.search``) selects or removes nothing: RFC 7644 asks for no error, and attributes outside
  the advertised schemas are ignored everywhere else too (discovery.py). A name that is not
  attribute notation (a value filter, spaces, an empty segment) is ``400 invalidValue``, and
  so is giving both lists (they are mutually exclusive).
"""

import re
from dataclasses import dataclass
from typing import Any

from . import errors
from .constants import ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA

_ALWAYS = ("schemas", "id")
_SCHEMAS = {urn.lower(): urn for urn in (USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_SCHEMA)}
# ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA (RFC 7643 §2.1), and
# "$ref" (RFC 7643 §2.4).
_ATTR = r"(?:[a-z][a-z0-9_-]*|\$ref)"
_PATH_RE = re.compile(rf"({_ATTR})(?:\.({_ATTR}))?", re.IGNORECASE)


@dataclass(frozen=True)
class _Name:
    """One listed name, lower-cased: ``schema`` is a known schema URN or None (unqualified),
    ``attribute`` "" means the whole schema."""

    schema: str | None
    attribute: str
    sub: str | None = None


def _parse_name(text: str) -> _Name | None:
    """The name, or None when it names a schema Beem does not have (ignored)."""
    lowered = text.lower()
    schema = None
    if lowered.startswith("urn:"):
        if lowered in _SCHEMAS:
            return _Name(lowered, "")
        # The URN is everything before the last ":" (schema URNs contain ":" and ".").
        schema, _sep, rest = lowered.rpartition(":")
        if schema not in _SCHEMAS:
            # A well-formed URN of another schema names nothing here.
            if re.fullmatch(r"urn:[a-z0-9][a-z0-9:._-]*", schema) and _PATH_RE.fullmatch(rest):
                return None
            raise _malformed(text)
        lowered = rest
    match = _PATH_RE.fullmatch(lowered)
    if match is None:
        raise _malformed(text)
    return _Name(schema, match[1], match[2])


def _malformed(text: str) -> errors.ScimError:
    return errors.invalid_value(
        f"{text!r} is not an attribute name: attributes and excludedAttributes take "
        'comma-separated names such as "userName", "name.givenName" or '
        f'"{ENTERPRISE_SCHEMA}:manager" (RFC 7644 §3.10).'
    )


def parse_list(raw: str | None) -> tuple[_Name, ...]:
    names = []
    for item in (raw or "").split(","):
        text = item.strip()
        if text and (name := _parse_name(text)) is not None:
            names.append(name)
    return tuple(names)


def _key(container: Any, lowered: str) -> str | None:
    if not isinstance(container, dict):
        return None
    return next((key for key in container if key.lower() == lowered), None)


def _source(resource: dict, name: _Name) -> tuple[dict | None, str | None]:
    """(the object holding ``name``, its key there), or (None, None): not an attribute here."""
    schemas = [schema.lower() for schema in resource.get("schemas", ())]
    core = next((s for s in schemas if s in (USER_SCHEMA.lower(), GROUP_SCHEMA.lower())), None)
    extension_key = _key(resource, ENTERPRISE_SCHEMA.lower())
    extension = resource.get(extension_key) if extension_key else None
    if name.schema == ENTERPRISE_SCHEMA.lower():
        if core != USER_SCHEMA.lower():
            return None, None
        return extension, _key(extension, name.attribute)
    if name.schema is not None and name.schema != core:
        return None, None
    key = _key(resource, name.attribute)
    if key is not None and key != extension_key:
        return resource, key
    if name.schema is None and (key := _key(extension, name.attribute)) is not None:
        return extension, key
    return None, None


def _select(value: Any, sub: str | None) -> Any:
    """``value`` reduced to its sub-attribute ``sub`` (of every entry when multi-valued)."""
    if sub is None:
        return value
    if isinstance(value, dict):
        key = _key(value, sub)
        return {key: value[key]} if key else None
    if isinstance(value, list):
        picked = [_select(entry, sub) for entry in value]
        return [entry for entry in picked if entry] or None
    return None


def _merge(target: dict, key: str, value: Any) -> None:
    if value is None:
        return
    current = target.get(key)
    if isinstance(value, dict) and isinstance(current, dict):
        target[key] = {**current, **value}
    elif isinstance(value, list) and isinstance(current, list) and len(value) == len(current):
        # emails.value and emails.type: the same entries, both sub-attributes.
        target[key] = [{**a, **b} for a, b in zip(current, value, strict=True)]
    else:
        target[key] = value


@dataclass(frozen=True)
class Projection:
    """What a request asks to return; ``NONE`` returns resources whole."""

    attributes: tuple[_Name, ...] = ()
    excluded: tuple[_Name, ...] = ()

    @classmethod
    def from_params(cls, params: Any) -> "Projection":
        """From a query string or ``search.search_params`` (both comma-separated text)."""
        attributes = parse_list(params.get("attributes"))
        excluded = parse_list(params.get("excludedAttributes"))
        if (params.get("attributes") or "").strip() and (
            params.get("excludedAttributes") or ""
        ).strip():
            raise errors.invalid_value(
                "attributes and excludedAttributes are mutually exclusive (RFC 7644 §3.4.2.5): "
                "give one of them."
            )
        if not attributes and (params.get("attributes") or "").strip():
            # Every name was of another schema: nothing but the always-returned attributes.
            return cls(attributes=(_Name(None, "id"),))
        return cls(attributes=attributes, excluded=excluded)

    @property
    def is_whole(self) -> bool:
        return not self.attributes and not self.excluded

    def excludes_only(self, attribute: str) -> bool:
        """Whether the request excludes exactly ``attribute`` (whole) and nothing else."""
        return not self.attributes and set(self.excluded) == {_Name(None, attribute.lower())}

    def wants(self, attribute: str) -> bool:
        """Whether the answer can hold the core attribute ``attribute`` (to skip loading it)."""
        lowered = attribute.lower()
        if self.attributes:
            return any(
                name.attribute in (lowered, "") and name.schema != ENTERPRISE_SCHEMA.lower()
                for name in self.attributes
            )
        return not any(
            name.attribute == lowered
            and name.sub is None
            and name.schema != ENTERPRISE_SCHEMA.lower()
            for name in self.excluded
        )

    def apply(self, resource: dict) -> dict:
        """``resource`` as the request asks; ``resource`` itself is never changed."""
        if self.attributes:
            return self._include(resource)
        if not self.excluded and resource.get(ENTERPRISE_SCHEMA, True):
            # Resources are rendered with the extension's canonical key: nothing to do (most
            # answers; the copy below is a good part of a list page's work otherwise).
            return resource
        extension_key = _key(resource, ENTERPRISE_SCHEMA.lower())
        result = dict(resource)
        for name in self.excluded:
            self._exclude(result, name)
        if extension_key in result and not result[extension_key]:
            # An empty extension is left out, as paging.rendered_page does.
            del result[extension_key]
        return result

    def _include(self, resource: dict) -> dict:
        result: dict[str, Any] = {key: resource[key] for key in _ALWAYS if key in resource}
        extension_key = _key(resource, ENTERPRISE_SCHEMA.lower())
        for name in self.attributes:
            if name.attribute == "":
                if name.schema == ENTERPRISE_SCHEMA.lower():
                    if extension_key and resource[extension_key]:
                        _merge(result, extension_key, resource[extension_key])
                    continue
                core = {k: v for k, v in resource.items() if k not in (extension_key, "meta")}
                if name.schema in (s.lower() for s in resource.get("schemas", ())):
                    result.update(core)
                continue
            container, key = _source(resource, name)
            if container is None or key is None or key in _ALWAYS:
                continue
            picked = _select(container[key], name.sub)
            if container is resource:
                _merge(result, key, picked)
            elif picked is not None:
                extension = dict(result.get(extension_key) or {})
                _merge(extension, key, picked)
                result[extension_key] = extension
        return result

    @staticmethod
    def _exclude(result: dict, name: _Name) -> None:
        """Remove ``name`` from ``result``, copying each object it changes (the resource may be
        shared)."""
        extension_key = _key(result, ENTERPRISE_SCHEMA.lower())
        if name.attribute == "":
            if name.schema == ENTERPRISE_SCHEMA.lower() and extension_key:
                del result[extension_key]
            return
        container, key = _source(result, name)
        if container is None or key is None or (container is result and key in _ALWAYS):
            return
        if container is not result:
            container = dict(container)
            result[extension_key] = container
        if name.sub is None:
            del container[key]
            return
        value = container[key]
        if isinstance(value, dict):
            container[key] = {k: v for k, v in value.items() if k.lower() != name.sub}
        elif isinstance(value, list):
            container[key] = [
                {k: v for k, v in entry.items() if k.lower() != name.sub}
                if isinstance(entry, dict)
                else entry
                for entry in value
            ]


NONE = Projection()
