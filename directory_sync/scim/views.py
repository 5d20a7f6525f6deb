"""SCIM 2.0 views: django-scim2's ``SCIMView`` (auth check, SCIM error rendering) with our
handlers.

django-scim2's own list/filter views count and page by iterating rows in Python and run filters
as raw SQL (design.md §5); these handlers count and slice in the database, filter with
``filters.filter_q`` and always scope to ``request.scim_organization``. Views do HTTP only:
parse, call an adapter (which calls the record services) or a query, render.
"""

import json
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from django_scim import views as scim_views
from django_scim.exceptions import SCIMException
from django_scim.settings import scim_settings

from ..models import DirectoryRecord
from ..store import reads as queries
from . import auth, discovery, errors, etags, filters, paging
from .adapters import GroupAdapter, UserAdapter, base_location, group_resource, user_resource
from .constants import (
    SCIM_CONTENT_TYPE,
    SEARCH_REQUEST_SCHEMA,
)
from .documents import refuse_unstorable_body
from .middleware import failure_response
from .projection import Projection

logger = logging.getLogger(__name__)

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _json_response(body: Any, *, status: int = 200) -> HttpResponse:
    response = HttpResponse(json.dumps(body), content_type=SCIM_CONTENT_TYPE, status=status)
    # The request log masks this dict instead of parsing the JSON again (request_log.py).
    response.scim_body = body
    return response


def _list_response(page: paging.Page, body: dict | None = None) -> HttpResponse:
    """A ListResponse; the request log keeps its summary (``scim_list_page``), not 100
    resources it would have to mask."""
    if body is None:
        response = HttpResponse(page.body(), content_type=SCIM_CONTENT_TYPE)
    else:
        response = _json_response(body)
    response.scim_list_page = page
    return response


# --- search requests (RFC 7644 §3.4.3) ---------------------------------------------------------

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


# --- views -----------------------------------------------------------------------------------


class ScimView(scim_views.SCIMView):
    """Base: SCIM bodies and content type on every answer, including 405 and 501."""

    # Bearer-token API, no cookies: CSRF does not apply. django-scim2 marks its own dispatch;
    # an overriding dispatch must be marked again or every write answers 403.
    @method_decorator(csrf_exempt)
    def dispatch(self, request, *args, **kwargs):
        # django-scim2's dispatch, without its per-call method_decorator wrappers (three
        # functools.wraps per request, bench profile): the auth check wraps the handler, and
        # anything but a SCIM error becomes a generic SCIM 500.
        auth_check = scim_settings.AUTH_CHECK_MIDDLEWARE(self._dispatch_authenticated)
        if request.method in _WRITE_METHODS and not auth.is_read(request):
            # One transaction per write request: the record, its outbox event and the request
            # log row (written by the auth check around the view) share one commit, so one WAL
            # flush per write. Record services decide every refusal before writing, so an
            # error answer commits only its log row. Opening the transaction runs Django's
            # connection health check ("SELECT 1", a round trip) unless the connection was
            # found answering moments ago: decided here, before the transaction starts.
            auth.health_check_if_idle()
            with transaction.atomic():
                response = auth_check(request, *args, **kwargs)
        else:
            response = auth_check(request, *args, **kwargs)
        response["Content-Type"] = SCIM_CONTENT_TYPE
        return response

    def _dispatch_authenticated(self, request, *args, **kwargs):
        if not self.implemented:
            return self.status_501(request, *args, **kwargs)
        try:
            return View.dispatch(self, request, *args, **kwargs)
        except SCIMException as exc:
            return _json_response(exc.to_dict(), status=exc.status)
        except Exception as exc:  # as django-scim2's dispatch
            if request.method in _WRITE_METHODS and not auth.is_read(request):
                # The write's transaction must roll back whole: ScimErrorMiddleware answers.
                raise
            return failure_response(request, exc)

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise errors.method_not_allowed(request.method, request.path)

    not_implemented_reason = "is not supported by this service."

    def status_501(self, request, *args, **kwargs):
        error = errors.not_implemented(f"{request.path} {self.not_implemented_reason}")
        return _json_response(error.to_dict(), status=501)

    def load_body(self, body: bytes | None = None) -> Any:
        try:
            raw = self.request.body if body is None else body
        except RequestDataTooBig:
            from django.conf import settings

            raise errors.payload_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise errors.invalid_syntax("The request body is not UTF-8 text.")
        if not text:
            raise errors.invalid_syntax("The request body is empty; a JSON object is expected.")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise errors.invalid_syntax(f"The request body is not valid JSON: {exc}.")
        except RecursionError:
            # json.loads recurses once per nesting level; a body like "[[[[..." deep enough
            # exhausts the stack (found by tests/hardening/test_scim_fuzz.py).
            raise errors.invalid_syntax("The request body is nested too deeply.")
        if not isinstance(data, dict):
            raise errors.invalid_syntax("The request body must be a JSON object.")
        # NUL and lone surrogates: refused before any write (found by the fuzzer: a database
        # error, or a write silently rolled back by the request log's failed insert).
        refuse_unstorable_body(text, data)
        return data

    @property
    def organization(self):
        organization = getattr(self.request, "scim_organization", None)
        if organization is None or organization.pk != self.kwargs.get("organization_id"):
            # The auth check binds the token to the Tenant URL's organization; this is a second
            # lock on the same door.
            raise errors.ScimError("The token does not belong to this Tenant URL.", status=401)
        return organization

    @property
    def base_url(self) -> str:
        return base_location(self.request)


class NotFoundView(ScimView):
    """Any other URL under the Tenant URL: a SCIM 404, not Django's HTML page."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def _answer(self, request, *args, **kwargs):
        raise errors.ScimError(f"{request.path} is not a SCIM endpoint.", status=404)

    # OPTIONS too: Django's default answers 200 with an empty body, labelled as SCIM JSON
    # (found by tests/hardening/test_scim_fuzz.py).
    get = post = put = patch = delete = options = _answer


class NotImplementedView(ScimView):
    implemented = False


class RootSearchView(NotImplementedView):
    # One search over Users and Groups would page two resource types, each filtered on its
    # own attributes and paged in its own order, as one list: not offered.
    not_implemented_reason = (
        "(a search across resource types) is not supported by this service: "
        "search /Users/.search or /Groups/.search."
    )


class _ResourceView(ScimView):
    http_method_names = ["get", "post", "put", "patch", "delete"]
    adapter_class: type = UserAdapter
    resource_type = ""

    def _page_params(self, params) -> tuple[int, int]:
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

    def _projection(self, params=None) -> Projection:
        return Projection.from_params(self.request.GET if params is None else params)

    def _get_record(self, scim_id: str) -> DirectoryRecord:
        record = queries.record_get(
            organization=self.organization, resource_type=self.resource_type, scim_id=scim_id
        )
        if record is None:
            raise errors.not_found(self.resource_type, scim_id)
        return record

    def _render(self, adapter, *, status: int = 200, location: bool = False) -> HttpResponse:
        body = self._projection().apply(adapter.to_dict())
        response = _json_response(body, status=status)
        response["ETag"] = etags.etag(adapter.obj.version)
        if location:
            response["Location"] = adapter.location
        return response

    def _adapters(self, records: list[DirectoryRecord], projection: Projection) -> list:
        return [self.adapter_class(record, request=self.request) for record in records]

    def _resource(self, row: queries.RecordRow) -> dict:
        raise NotImplementedError

    def _with_members(self, projection: Projection) -> bool:
        return False

    def get(self, request, organization_id, uuid=None):
        if not uuid:
            return self._list(request.GET)
        projection = self._projection()
        # GET /Users/<id>: one indexed statement, rendered from the row (no model).
        key = queries.scim_uuid(uuid)
        rows = self._read("scim_id", key, limit=1, with_members=self._with_members(projection))
        if not rows:
            raise errors.not_found(self.resource_type, uuid)
        row = rows[0]
        if etags.not_modified(request, row.version):
            response = HttpResponse(status=304)
        else:
            response = _json_response(projection.apply(self._resource(row)))
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
        start, count = self._page_params(params)
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
            return _list_response(page)
        records = queries.record_list(
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
        return _list_response(
            page, discovery.list_response(resources, total=page.total, start=start)
        )

    def _renders_stored(self, projection: Projection) -> bool:
        """Whether a page is the stored documents as they are (no projection to apply)."""
        return projection.is_whole

    def _read(self, column: str, value, *, limit: int, with_members: bool) -> list:
        """Rows whose ``column`` equals ``value`` (None: nothing can match), and the open
        provisioning run in the same statement: the auth check assigns a GET its run after
        the view (``runs.run_for_request``), and Entra's probe is this very lookup."""
        if value is None:
            return []
        rows, run, changed = queries.records_lookup_with_open_run(
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
        start, count = self._page_params(params)
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
            total = queries.record_list(
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
        return _list_response(page, discovery.list_response(resources, total=total, start=start))

    def post(self, request, organization_id, uuid=None):
        if uuid:
            raise errors.method_not_allowed("POST", request.path)
        self.organization  # noqa: B018 - checks the token's organization before parsing
        adapter = self.adapter_class(None, request=request)
        adapter.validate_dict(self.load_body())
        adapter.save()
        return self._render(adapter, status=201, location=True)

    def put(self, request, organization_id, uuid=None):
        if not uuid:
            raise errors.method_not_allowed("PUT", request.path)
        adapter = self.adapter_class(self._get_record(uuid), request=request)
        adapter.validate_dict(self.load_body())
        adapter.save()
        return self._render(adapter, location=True)

    def patch(self, request, organization_id, uuid=None):
        if not uuid:
            raise errors.method_not_allowed("PATCH", request.path)
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
            raise errors.method_not_allowed("DELETE", request.path)
        adapter = self.adapter_class(self._get_record(uuid), request=request)
        adapter.delete()
        return HttpResponse(status=204, content_type=SCIM_CONTENT_TYPE)


class UsersView(_ResourceView):
    adapter_class = UserAdapter
    resource_type = DirectoryRecord.ResourceType.USER

    def _resource(self, row: queries.RecordRow) -> dict:
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
            members = queries.group_members(group_ids=[record.pk for record in records])
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

    def _resource(self, row: queries.RecordRow) -> dict:
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

    def post(self, request, organization_id):
        self.organization  # noqa: B018 - checks the token's organization before parsing
        return self._list(search_params(self.load_body()))


class UsersSearchView(_SearchView, UsersView):
    pass


class GroupsSearchView(_SearchView, GroupsView):
    pass


class ServiceProviderConfigView(ScimView):
    http_method_names = ["get"]

    def get(self, request, organization_id):
        self.organization  # noqa: B018
        return _json_response(discovery.service_provider_config(self.base_url))


class ResourceTypesView(ScimView):
    http_method_names = ["get"]

    def get(self, request, organization_id, uuid=None):
        self.organization  # noqa: B018
        documents = discovery.resource_type_documents(self.base_url)
        if uuid:
            for document in documents:
                if document["id"] == uuid:
                    return _json_response(document)
            raise errors.ScimError(f"Resource type {uuid} not found.", status=404)
        return _json_response(discovery.list_response(documents))


class SchemasView(ScimView):
    http_method_names = ["get"]

    def get(self, request, organization_id, uuid=None):
        self.organization  # noqa: B018
        documents = discovery.schema_documents(self.base_url)
        if uuid:
            for document in documents:
                if document["id"] == uuid:
                    return _json_response(document)
            raise errors.ScimError(f"Schema {uuid} not found.", status=404)
        return _json_response(discovery.list_response(documents))
