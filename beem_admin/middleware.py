"""Project-wide middleware."""

from collections.abc import Callable
from importlib import import_module

from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import translation

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


# --- middleware the SCIM API does without --------------------------------------------------

SCIM_PREFIX = "/scim/"  # beem_admin/urls.py mounts the SCIM endpoint here


def skipped_for_scim(middleware_class: type) -> type:
    """``middleware_class``, except that requests under ``/scim/`` pass straight through it.

    The SCIM endpoint is a Bearer-token API: no cookies, sessions, logged-in user, flash
    messages or locale (its answers are English RFC 7644 error
    bodies). Running those for each of Entra's calls cost about as much as the SCIM work
    itself (bench profile). Requests elsewhere (admin UI, /o/token/, /metrics) are unchanged.
    """

    class SkippedForScim(middleware_class):
        def __call__(self, request: HttpRequest) -> HttpResponse:
            if request.path_info.startswith(SCIM_PREFIX):
                return self.get_response(request)
            return super().__call__(request)

        if hasattr(middleware_class, "process_view"):

            def process_view(self, request, *args, **kwargs):
                if request.path_info.startswith(SCIM_PREFIX):
                    return None
                return super().process_view(request, *args, **kwargs)

        if hasattr(middleware_class, "process_exception"):

            def process_exception(self, request, exception):
                if request.path_info.startswith(SCIM_PREFIX):
                    return None
                return super().process_exception(request, exception)

    SkippedForScim.__name__ = SkippedForScim.__qualname__ = middleware_class.__name__
    SkippedForScim.__module__ = __name__
    return SkippedForScim


def _skipped(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return skipped_for_scim(getattr(import_module(module), name))


SessionMiddleware = _skipped("django.contrib.sessions.middleware.SessionMiddleware")
_LocaleMiddleware = _skipped("django.middleware.locale.LocaleMiddleware")


class LocaleMiddleware(_LocaleMiddleware):
    """Under /scim/ the default language, as LocaleMiddleware gave Entra (it sends no
    Accept-Language), without its work. Not left to chance: an admin page in Arabic served
    by the same process leaves Arabic active in the thread."""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(SCIM_PREFIX):
            translation.deactivate()
        return super().__call__(request)


AuthenticationMiddleware = _skipped("django.contrib.auth.middleware.AuthenticationMiddleware")
MessageMiddleware = _skipped("django.contrib.messages.middleware.MessageMiddleware")
