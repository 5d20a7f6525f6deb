"""Refuse oversized request bodies early, with 413 (and a SCIM error body on SCIM routes).

Django's own guard (``DATA_UPLOAD_MAX_MEMORY_SIZE``) raises ``RequestDataTooBig`` when a view
reads ``request.body``, which Django answers with a bare 400: Entra ID would log it as a bad
request and a client could not tell "too big" from "malformed". RFC 7644 §3.12 lets a SCIM
service answer 413 "Request Entity Too Large"; we do so before any view, parser or database
work runs, from the declared ``Content-Length``. A body that exceeds the limit without
declaring it (Django reads at most ``Content-Length`` bytes, so this only happens when the
view reads a larger declared body) is caught when it is read and answered the same way.
"""

import json
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

SCIM_PATH_PREFIX = "/scim/"
SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def max_body_bytes() -> int:
    return settings.BEEM_MAX_BODY_BYTES


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        # Django itself treats an unparsable Content-Length as an empty body.
        return 0


def body_too_large_response(request: HttpRequest) -> HttpResponse:
    limit = max_body_bytes()
    detail = _(
        "The request body is larger than the %(limit)s bytes this server accepts. "
        "Send smaller requests (a SCIM resource is a few kilobytes)."
    ) % {"limit": limit}
    if request.path.startswith(SCIM_PATH_PREFIX):
        body = {"schemas": [SCIM_ERROR_SCHEMA], "status": "413", "detail": detail}
        response = HttpResponse(json.dumps(body), status=413, content_type="application/scim+json")
    else:
        response = HttpResponse(detail, status=413, content_type="text/plain; charset=utf-8")
    # The client may still be sending the body; tell it we will not read the rest.
    response["Connection"] = "close"
    return response


class RequestBodyLimitMiddleware:
    """413 for any request whose body is over ``settings.BEEM_MAX_BODY_BYTES``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _declared_length(request) > max_body_bytes():
            return body_too_large_response(request)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return body_too_large_response(request)
        return None
