"""Project-wide middleware."""

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.utils.module_loading import import_string

from .logging import NO_REQUEST_ID, request_id_clean, request_id_new, request_id_var

REQUEST_ID_RESPONSE_HEADER = "X-Request-ID"


class RequestIdMiddleware:
    """Give every request an id: the caller's ``X-Request-ID`` when sane, else a new uuid4 hex.

    Listed first in ``MIDDLEWARE`` so every later log line of the request carries the id. The id
    is set on ``request.request_id`` (SCIM writes store it on their change events), put in the
    logging context variable, and echoed in the response so a client or load balancer can quote
    it when reporting a problem.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # META, not request.headers: that builds a dict of every header, for one of them.
        request_id = request_id_clean(request.META.get("HTTP_X_REQUEST_ID")) or request_id_new()
        request.request_id = request_id
        # Not reset on the way out: Django logs "Not Found: ..." and the server logs the request
        # line after the middleware chain returned, and those lines need the id too. The
        # request_finished receiver below clears it once the response is closed.
        request_id_var.set(request_id)
        response = self.get_response(request)
        response[REQUEST_ID_RESPONSE_HEADER] = request_id
        return response


@receiver(request_finished, dispatch_uid="beem_request_id_clear")
def _request_id_clear(**kwargs) -> None:
    request_id_var.set(NO_REQUEST_ID)


# --- a middleware chain per path prefix ----------------------------------------------------


class MiddlewareChain(BaseHandler):
    """Django's request handling (URL resolving, view and exception middleware, the view) behind
    a middleware list of its own, built like ``BaseHandler.load_middleware`` builds
    ``MIDDLEWARE`` (synchronous only: the project is served over WSGI)."""

    def __init__(self, middleware: list[str]):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(middleware):
            try:
                instance = import_string(path)(handler)
            except MiddlewareNotUsed:
                continue
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self._middleware_chain(request)


class PathRouterMiddleware:
    """Requests under a prefix of ``settings.MIDDLEWARE_BY_PATH`` leave ``MIDDLEWARE`` here and
    go through that prefix's chain instead (first matching prefix wins).

    ``MIDDLEWARE`` is the admin UI's (sessions, locale, CSRF, login, messages, axes). The SCIM
    API and the token endpoint are called by Entra ID with a Bearer token or client
    credentials: no cookie, session, logged-in user, flash message or language choice, so they
    do not pay for them.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.routes = tuple(
            (prefix, MiddlewareChain(middleware))
            for prefix, middleware in settings.MIDDLEWARE_BY_PATH.items()
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        for prefix, chain in self.routes:
            if path.startswith(prefix):
                return chain(request)
        return self.get_response(request)


class DefaultLanguageMiddleware:
    """The default language for APIs that have no language choice (their answers are English
    protocol texts): not left to chance, as an admin page in Arabic served by the same process
    leaves Arabic active in the thread."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        translation.deactivate()
        return self.get_response(request)
