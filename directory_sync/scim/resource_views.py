"""SCIM /Users and /Groups (RFC 7644 §3.2-§3.6) and their ``.search``: HTTP only — parse,
call an adapter (which calls the record services) or a read of ``store.reads``, render.

django-scim2's own list/filter views count and page by iterating rows in Python and run filters
as raw SQL (design.md §5); these handlers count and slice in the database, filter with
``filters.filter_q`` and always scope to ``request.scim_organization``. Every answer holding
resources is projected by ``projection.Projection``; single resources carry their ``ETag``
(``etags``).
"""

from django.http import HttpResponse

from ..models import DirectoryRecord
from ..store import reads
from . import errors, etags, filters, paging, search
from .adapters import GroupAdapter, UserAdapter, group_resource, user_resource
from .constants import SCIM_CONTENT_TYPE
from .discovery import list_response
from .projection import Projection
from .views import ScimView, json_response, list_response_of_page


class _ResourceView(ScimView):
    http_method_names = ["get", "post", "put", "patch", "delete"]
    adapter_class: type = UserAdapter
    resource_type = ""

    def _projection(self, params=None) -> Projection:
        return Projection.from_params(self.request.GET if params is None else params)

    def _get_record(self, scim_id: str) -> DirectoryRecord:
        record = reads.record_get(
            organization=self.organization, resource_type=self.resource_type, scim_id=scim_id
        )
        if record is None:
            raise errors.not_found(self.resource_type, scim_id)
        return record

    def _render(self, adapter, *, status: int = 200, location: bool = False) -> HttpResponse:
        body = self._projection().apply(adapter.to_dict())
        response = json_response(body, status=status)
        response["ETag"] = etags.etag(adapter.obj.version)
        if location:
            response["Location"] = adapter.location
        return response

    def _adapters(self, records: list[DirectoryRecord], projection: Projection) -> list:
        return [self.adapter_class(record, request=self.request) for record in records]

    def _resource(self, row: reads.RecordRow) -> dict:
        raise NotImplementedError

    def _with_members(self, projection: Projection) -> bool:
        return False

    def get(self, request, organization_id, uuid=None):
        if not uuid:
            return self._list(request.GET)
        projection = self._projection()
        # GET /Users/<id>: one indexed statement, rendered from the row (no model).
        key = reads.scim_uuid(uuid)
        rows = self._read("scim_id", key, limit=1, with_members=self._with_members(projection))
        if not rows:
            raise errors.not_found(self.resource_type, uuid)
        row = rows[0]
        if etags.not_modified(request, row.version):
            response = HttpResponse(status=304)
        else:
            response = json_response(projection.apply(self._resource(row)))
        response["ETag"] = etags.etag(row.version)
        return response

    def _list(self, params) -> HttpResponse:
        """A ListResponse for the query ``params`` (a GET's query string, or a search
        request's body: ``search_params``)."""
        organization = self.organization
        projection = self._projection(params)
        query = None
        ordering = None
        if (sort_by := params.get("sortBy")) is not None:
            ordering = filters.ordering(
                sort_by, params.get("sortOrder"), resource_type=self.resource_type
            )
        filter_text = params.get("filter")
        if filter_text is not None:
            lookup = filters.filter_lookup(filter_text, resource_type=self.resource_type)
            if lookup is not None and ordering is None:
                return self._lookup(params, filter_text, lookup, projection)
            query = filters.filter_q(filter_text, resource_type=self.resource_type)
        start, count = search.page_params(params)
        if (
            query is None
            and ordering is None
            and self._renders_stored(projection)
            and paging.renders_in_database()
        ):
            page = paging.rendered_page(
                organization_id=organization.pk,
                resource_type=self.resource_type,
                start=start,
                count=count,
                base_url=self.base_url,
            )
            return list_response_of_page(page)
        records = reads.record_list(
            organization=organization,
            resource_type=self.resource_type,
            query=query,
            ordering=ordering,
        )
        page = paging.record_page(
            records,
            organization_id=organization.pk,
            resource_type=self.resource_type,
            start=start,
            count=count,
            # A sorted list is not in primary-key order: it is paged by OFFSET, like a filter.
            filtered=query is not None or ordering is not None,
        )
        resources = [
            projection.apply(adapter.to_dict())
            for adapter in self._adapters(page.records, projection)
        ]
        return list_response_of_page(page, list_response(resources, total=page.total, start=start))

    def _renders_stored(self, projection: Projection) -> bool:
        """Whether a page is the stored documents as they are (no projection to apply)."""
        return projection.is_whole

    def _read(self, column: str, value, *, limit: int, with_members: bool) -> list:
        """Rows whose ``column`` equals ``value`` (None: nothing can match), and the open
        provisioning run in the same statement: the auth check assigns a GET its run after
        the view (``runs.run_for_request``), and Entra's probe is this very lookup."""
        if value is None:
            return []
        rows, run, changed = reads.records_lookup_with_open_run(
            organization_id=self.organization.pk,
            resource_type=self.resource_type,
            column=column,
            value=value,
            limit=limit,
            with_members=with_members,
        )
        self.request.scim_open_run = (run, changed, bool(rows))
        return rows

    def _lookup(
        self, params, filter_text: str, lookup: filters.Lookup, projection: Projection
    ) -> HttpResponse:
        """Entra's lookups (``userName eq``, ``externalId eq``, ...): one indexed statement,
        no COUNT unless more rows match than the page shows."""
        start, count = search.page_params(params)
        rows = self._read(
            lookup.column,
            lookup.value,
            # One row more than needed: fewer rows back means the total is known.
            limit=start + count,
            with_members=self._with_members(projection),
        )
        if len(rows) < start + count:
            total = len(rows)
        else:
            total = reads.record_list(
                organization=self.organization,
                resource_type=self.resource_type,
                query=filters.filter_q(filter_text, resource_type=self.resource_type),
            ).count()
        shown = rows[start - 1 : start - 1 + count]
        resources = [projection.apply(self._resource(row)) for row in shown]
        # Logged like a list page: counts and ids (request_log.list_summary).
        page = paging.Page(
            total=total, start=start, resources_json="", scim_ids=[str(r.scim_id) for r in shown]
        )
        return list_response_of_page(page, list_response(resources, total=total, start=start))

    @staticmethod
    def _allowed(uuid) -> list[str]:
        """What the route serves: a collection is read and created, a resource read,
        replaced, patched and deleted."""
        return ["GET", "PUT", "PATCH", "DELETE"] if uuid else ["GET", "POST"]

    def http_method_not_allowed(self, request, *args, **kwargs):
        allowed = self._allowed(kwargs.get("uuid"))
        raise errors.method_not_allowed(request.method, request.path, allowed)

    def post(self, request, organization_id, uuid=None):
        if uuid:
            raise errors.method_not_allowed("POST", request.path, self._allowed(uuid))
        self.organization  # noqa: B018 - checks the token's organization before parsing
        adapter = self.adapter_class(None, request=request)
        adapter.validate_dict(self.load_body())
        adapter.save()
        return self._render(adapter, status=201, location=True)

    def put(self, request, organization_id, uuid=None):
        if not uuid:
            raise errors.method_not_allowed("PUT", request.path, self._allowed(uuid))
        adapter = self.adapter_class(self._get_record(uuid), request=request)
        adapter.validate_dict(self.load_body())
        adapter.save()
        return self._render(adapter, location=True)

    def patch(self, request, organization_id, uuid=None):
        if not uuid:
            raise errors.method_not_allowed("PATCH", request.path, self._allowed(uuid))
        # No read first: the record service locks the record (404 when it is not live here)
        # and the adapter renders what it wrote.
        self.organization  # noqa: B018 - checks the token's organization before parsing
        adapter = self.adapter_class(None, request=request, scim_id=uuid)
        try:
            body = self.load_body()
            operations = next((v for k, v in body.items() if k.lower() == "operations"), None)
            if not isinstance(operations, list) or not operations:
                raise errors.invalid_syntax('A PATCH body needs a non-empty "Operations" array.')
            adapter.handle_operations(operations)
        except errors.ScimError as exc:
            # An id that is not a live record here is a 404 whatever the body (another
            # organization's ids must look the same as unknown ones): checked on errors only.
            if exc.status != 404:
                self._get_record(uuid)
            raise
        return self._patched(adapter)

    def _patched(self, adapter) -> HttpResponse:
        return self._render(adapter, location=True)

    def delete(self, request, organization_id, uuid=None):
        if not uuid:
            raise errors.method_not_allowed("DELETE", request.path, self._allowed(uuid))
        adapter = self.adapter_class(self._get_record(uuid), request=request)
        adapter.delete()
        return HttpResponse(status=204, content_type=SCIM_CONTENT_TYPE)


class UsersView(_ResourceView):
    adapter_class = UserAdapter
    resource_type = DirectoryRecord.ResourceType.USER

    def _resource(self, row: reads.RecordRow) -> dict:
        return user_resource(row, self.base_url)


class GroupsView(_ResourceView):
    adapter_class = GroupAdapter
    resource_type = DirectoryRecord.ResourceType.GROUP

    def _renders_stored(self, projection: Projection) -> bool:
        # Entra lists groups with excludedAttributes=members (entra-contract.md): stored
        # documents hold no members, so such a page is the documents as they are.
        return projection.excludes_only("members")

    def _adapters(self, records: list[DirectoryRecord], projection: Projection) -> list:
        if projection.wants("members"):
            members = reads.group_members(group_ids=[record.pk for record in records])
        else:
            # excludedAttributes=members: Entra's per-cycle group lookup must not load members.
            members = {}
        return [
            GroupAdapter(record, request=self.request, members=members.get(record.pk, []))
            for record in records
        ]

    def _with_members(self, projection: Projection) -> bool:
        # excludedAttributes=members: Entra's per-cycle group lookup must not load members.
        return projection.wants("members")

    def _resource(self, row: reads.RecordRow) -> dict:
        return group_resource(row, self.base_url, row.members)

    def _patched(self, adapter) -> HttpResponse:
        # Entra expects 204 for group PATCH (entra-contract.md, "Answers Entra relies on").
        response = HttpResponse(status=204, content_type=SCIM_CONTENT_TYPE)
        response["ETag"] = etags.etag(adapter.obj.version)
        return response


class _SearchView:
    """``POST /Users/.search``, ``POST /Groups/.search`` (RFC 7644 §3.4.3): the list path of
    GET, with its parameters read from the SearchRequest body."""

    http_method_names = ["post"]

    @staticmethod
    def _allowed(uuid=None) -> list[str]:
        return ["POST"]

    def post(self, request, organization_id):
        self.organization  # noqa: B018 - checks the token's organization before parsing
        return self._list(search.search_params(self.load_body()))


class UsersSearchView(_SearchView, UsersView):
    pass


class GroupsSearchView(_SearchView, GroupsView):
    pass
