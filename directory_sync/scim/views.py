"""SCIM 2.0 views: django-scim2's ``SCIMView`` (auth check, SCIM error rendering) as our
``ScimView`` base, the answers for unknown and unsupported endpoints, discovery
(/ServiceProviderConfig, /ResourceTypes, /Schemas) and the search from the service root.
/Users and /Groups are in ``resource_views``. Views do HTTP only: parse, call an adapter or a
read, render.
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

from . import auth_middleware, discovery, errors, paging, search
from .adapters import base_location
from .constants import (
    SCIM_CONTENT_TYPE,
)
from .document_checks import refuse_unstorable_body
from .middleware import failure_response

logger = logging.getLogger(__name__)

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def json_response(body: Any, *, status: int = 200) -> HttpResponse:
    response = HttpResponse(json.dumps(body), content_type=SCIM_CONTENT_TYPE, status=status)
    # The request log masks this dict instead of parsing the JSON again (request_log.py).
    response.scim_body = body
    return response


def list_response_of_page(page: paging.Page, body: dict | None = None) -> HttpResponse:
    """A ListResponse; the request log keeps its summary (``scim_list_page``), not 100
    resources it would have to mask."""
    if body is None:
        response = HttpResponse(page.body(), content_type=SCIM_CONTENT_TYPE)
    else:
        response = json_response(body)
    response.scim_list_page = page
    return response


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
        if request.method in _WRITE_METHODS and not auth_middleware.is_read(request):
            # One transaction per write request: the record, its outbox event and the request
            # log row (written by the auth check around the view) share one commit, so one WAL
            # flush per write. Record services decide every refusal before writing, so an
            # error answer commits only its log row. Opening the transaction runs Django's
            # connection health check ("SELECT 1", a round trip) unless the connection was
            # found answering moments ago: decided here, before the transaction starts.
            auth_middleware.health_check_if_idle()
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
            response = json_response(exc.to_dict(), status=exc.status)
            if isinstance(exc, errors.ScimError):
                exc.headers_set(response)
            return response
        except Exception as exc:  # as django-scim2's dispatch
            if request.method in _WRITE_METHODS and not auth_middleware.is_read(request):
                # The write's transaction must roll back whole: ScimErrorMiddleware answers.
                raise
            return failure_response(request, exc)

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise errors.method_not_allowed(request.method, request.path, self._allowed_methods())

    not_implemented_reason = "is not supported by this service."

    def status_501(self, request, *args, **kwargs):
        error = errors.not_implemented(f"{request.path} {self.not_implemented_reason}")
        return json_response(error.to_dict(), status=501)

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


class RootSearchView(ScimView):
    """``POST /.search`` (RFC 7644 §3.4.3): Users and Groups in one list (``search``)."""

    http_method_names = ["post"]

    def post(self, request, organization_id):
        organization = self.organization
        params = search.search_params(self.load_body())
        page, resources = search.search_across(
            params, organization=organization, base_url=self.base_url
        )
        return list_response_of_page(
            page, discovery.list_response(resources, total=page.total, start=page.start)
        )


class ServiceProviderConfigView(ScimView):
    http_method_names = ["get"]

    def get(self, request, organization_id):
        self.organization  # noqa: B018
        return json_response(discovery.service_provider_config(self.base_url))


class ResourceTypesView(ScimView):
    http_method_names = ["get"]

    def get(self, request, organization_id, uuid=None):
        self.organization  # noqa: B018
        documents = discovery.resource_type_documents(self.base_url)
        if uuid:
            for document in documents:
                if document["id"] == uuid:
                    return json_response(document)
            raise errors.ScimError(f"Resource type {uuid} not found.", status=404)
        return json_response(discovery.list_response(documents))


class SchemasView(ScimView):
    http_method_names = ["get"]

    def get(self, request, organization_id, uuid=None):
        self.organization  # noqa: B018
        documents = discovery.schema_documents(self.base_url)
        if uuid:
            for document in documents:
                if document["id"] == uuid:
                    return json_response(document)
            raise errors.ScimError(f"Schema {uuid} not found.", status=404)
        return json_response(discovery.list_response(documents))
