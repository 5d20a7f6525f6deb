"""SCIM versioning (RFC 7644 §3.14): ``ETag: W/"<version>"`` and its preconditions.

A record's ``version`` counter is bumped by every accepted change, a group's member changes
included (``records``), so it is the entity tag: ``meta.version`` and the ``ETag`` header carry
the same ``W/"<version>"``. ``If-Match`` on PUT/PATCH/DELETE is checked by the record service
under the row lock (``expected_versions``), so a concurrent write cannot slip between check and
write; ``If-None-Match`` on GET by id answers 304. Entity tags are compared weakly (RFC 7232
§2.3.2: ``W/"3"`` and ``"3"`` match), ``*`` matches any current version. Entra sends neither
header: its requests take none of these branches.
"""

import re

_TAG_RE = re.compile(r'\s*(?:W/)?"([^"]*)"\s*')


def etag(version: int) -> str:
    return f'W/"{version}"'


def _versions(header: str) -> frozenset[int] | None:
    """The versions a header's entity tags name; None for ``*``. A tag that is not one of
    ours (not a number, or not an entity tag) names no version, so it never matches."""
    if header.strip() == "*":
        return None
    versions = set()
    for item in header.split(","):
        match = _TAG_RE.fullmatch(item)
        if match is not None and match[1].isdigit():
            versions.add(int(match[1]))
    return frozenset(versions)


def if_match(request) -> frozenset[int] | None:
    """The versions a write's ``If-Match`` allows; None when any version will do (no header,
    or ``*``: the record exists, which the write checks anyway)."""
    header = request.META.get("HTTP_IF_MATCH")
    return None if header is None else _versions(header)


def not_modified(request, version: int) -> bool:
    """Whether a GET's ``If-None-Match`` names the current ``version`` (answer 304)."""
    header = request.META.get("HTTP_IF_NONE_MATCH")
    if header is None:
        return False
    versions = _versions(header)
    return versions is None or version in versions
