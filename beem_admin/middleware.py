"""Project-wide middleware."""

from collections.abc import Callable

from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

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
        request_id = request_id_clean(request.headers.get("X-Request-ID")) or request_id_new()
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
