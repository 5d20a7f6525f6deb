"""The parameters of a list or search (RFC 7644 §3.4.2.4, §3.4.3), and the search from the
service root.

A SearchRequest body is read into the query parameters a GET takes (``search_params``), so
``POST /Users/.search`` runs the very list path of ``GET /Users``. ``POST /.search`` searches
Users and Groups in one list (``search_across``): the filter applies to both types, a term on
an attribute one type does not have is judged there as an attribute without a value (RFC 7644
§3.4.3: ``userName eq "x"`` matches no group, ``not (userName pr)`` every group), a term no
type has is ``400 invalidFilter``. Users and groups are records of one table, so the list is
in primary-key order (or ``sortBy``, then primary key): pages never overlap or skip across
types. Each resource keeps its own ``schemas`` and ``meta.resourceType``, and is projected
like any other answer.
"""

from django.db.models import Q

from members.models import Organization

from ..models import DirectoryRecord
from ..store import reads
from . import discovery, errors, filters, paging
from .adapters import group_resource, user_resource
from .constants import SEARCH_REQUEST_SCHEMA
from .projection import Projection

_TYPES = (DirectoryRecord.ResourceType.USER, DirectoryRecord.ResourceType.GROUP)


def page_params(params) -> tuple[int, int]:
    """``(startIndex, count)`` of a list or search."""
    maximum = discovery.max_results()
    try:
        start = int(params.get("startIndex", 1))
        count = int(params.get("count", maximum))
    except ValueError:
        raise errors.invalid_value("startIndex and count must be whole numbers.")
    # RFC 7644 §3.4.2.4: startIndex < 1 is read as 1, a negative count as 0; a count over
    # filter.maxResults is capped. A startIndex past any directory is capped too, so the
    # database's OFFSET (a bigint) never overflows (found by the fuzzer: a 500).
    return min(max(start, 1), paging.MAX_START_INDEX), min(max(count, 0), maximum)


_SEARCH_TEXT = ("filter", "sortBy", "sortOrder")
_SEARCH_NUMBERS = ("startIndex", "count")
_SEARCH_LISTS = ("attributes", "excludedAttributes")


def search_params(body: dict) -> dict[str, str]:
    """A SearchRequest body as the query parameters GET takes (names as in the query string,
    values as text), so a search runs the very list path of GET."""
    by_name = {key.lower(): value for key, value in body.items()}
    schemas = by_name.get("schemas")
    if schemas is not None and (
        not isinstance(schemas, list) or SEARCH_REQUEST_SCHEMA not in schemas
    ):
        raise errors.invalid_value(f'"schemas" must list "{SEARCH_REQUEST_SCHEMA}".')
    params: dict[str, str] = {}
    for name in _SEARCH_TEXT:
        value = by_name.get(name.lower())
        if value is None:
            continue
        if not isinstance(value, str):
            raise errors.invalid_value(f'"{name}" must be a string.')
        params[name] = value
    for name in _SEARCH_NUMBERS:
        value = by_name.get(name.lower())
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.invalid_value(f'"{name}" must be a whole number.')
        params[name] = str(value)
    for name in _SEARCH_LISTS:
        value = by_name.get(name.lower())
        if value is None:
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise errors.invalid_value(f'"{name}" must be an array of attribute names.')
        params[name] = ",".join(value)
    return params


def search_across(
    params: dict[str, str], *, organization: Organization, base_url: str
) -> tuple[paging.Page, list[dict]]:
    """The page of users and groups ``params`` (``search_params``) asks for, rendered."""
    projection = Projection.from_params(params)
    query = Q(resource_type__in=_TYPES)
    if (filter_text := params.get("filter")) is not None:
        query = filters.filter_q_across(filter_text, _TYPES)
    ordering = ["pk"]
    if (sort_by := params.get("sortBy")) is not None:
        # Users hold every sortable attribute; a group has none of the user-only ones, which
        # sort as absent values (last).
        ordering = filters.ordering(
            sort_by, params.get("sortOrder"), resource_type=DirectoryRecord.ResourceType.USER
        )
    start, count = page_params(params)
    # One ORM query over both resource types (store.reads.record_list reads one type).
    records = (
        DirectoryRecord.objects.filter(organization=organization, deleted_at__isnull=True)
        .filter(query)
        .order_by(*ordering)
    )
    page = paging.record_page(
        records,
        organization_id=organization.pk,
        resource_type="",
        start=start,
        count=count,
        filtered=True,
    )
    groups = [r.pk for r in page.records if r.resource_type == DirectoryRecord.ResourceType.GROUP]
    members = reads.group_members(group_ids=groups) if projection.wants("members") else {}
    resources = [
        projection.apply(
            user_resource(record, base_url)
            if record.resource_type == DirectoryRecord.ResourceType.USER
            else group_resource(
                record, base_url, [scim_id for scim_id, _ in members.get(record.pk, ())]
            )
        )
        for record in page.records
    ]
    return page, resources
