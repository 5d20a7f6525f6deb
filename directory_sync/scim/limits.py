"""Refuse oversized request bodies early, with 413 (and a SCIM error body on SCIM routes).

Django's own guard (``DATA_UPLOAD_MAX_MEMORY_SIZE``) raises ``RequestDataTooBig`` when a view
reads ``request.body``, which Django answers with a bare 400: Entra ID would log it as a bad
request and a client could not tell "too big" from "malformed". RFC 7644 §3.12 lets a SCIM
service answer 413 "Request Entity Too Large"; we do so before any view, parser or database
work runs, from the declared ``Content-Length``. A body that exceeds the limit without
declaring it (Django reads at most ``Content-Length`` bytes, so this only happens when the
view reads a larger declared body) is caught when it is read and answered the same way.

A chunked body (``Transfer-Encoding: chunked``, no ``Content-Length``) is held to the same
limit: Django reads ``Content-Length`` bytes of a request, so it would see such a body as empty.
"""

import io
import json
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from .constants import ERROR_SCHEMA, SCIM_CONTENT_TYPE

SCIM_PATH_PREFIX = "/scim/"


def max_body_bytes() -> int:
    return settings.BEEM_MAX_BODY_BYTES


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        # Django itself treats an unparsable Content-Length as an empty body.
        return 0


def _body_refused(request: HttpRequest, status: int, detail: str) -> HttpResponse:
    if request.path.startswith(SCIM_PATH_PREFIX):
        body = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
        response = HttpResponse(json.dumps(body), status=status, content_type=SCIM_CONTENT_TYPE)
    else:
        response = HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")
    # No "Connection: close" although the rest of the body goes unread: PEP 3333 forbids
    # hop-by-hop headers to applications (Django's runserver fails the request on it, gunicorn
    # drops it and skips the unread body itself).
    return response


def body_too_large_response(request: HttpRequest) -> HttpResponse:
    detail = _(
        "The request body is larger than the %(limit)s bytes this server accepts. "
        "Send smaller requests (a SCIM resource is a few kilobytes)."
    ) % {"limit": max_body_bytes()}
    return _body_refused(request, 413, detail)


def _is_chunked(request: HttpRequest) -> bool:
    # RFC 9112 §6.3: with Transfer-Encoding, a Content-Length is ignored (and gunicorn refuses
    # a request that has both).
    return "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()


def _chunked_body_read(request: HttpRequest) -> HttpResponse | None:
    """Read a chunked body up to the limit and hand it to Django as if it had been sent with
    a ``Content-Length``; or the refusal to answer.

    Only a server that decodes the chunked framing itself says so, with the WSGI extension
    ``wsgi.input_terminated`` (gunicorn does): its ``wsgi.input`` ends where the body ends.
    Any other server (Django's runserver hands over an empty stream) gets 411.
    """
    environ = request.META
    if not environ.get("wsgi.input_terminated"):
        detail = _(
            "This server needs the length of the request body: send it with a Content-Length "
            "header instead of chunked transfer encoding."
        )
        return _body_refused(request, 411, detail)
    limit = max_body_bytes()
    try:
        body = environ["wsgi.input"].read(limit + 1)
    except Exception:  # the server's chunk parser: bad framing, client gone
        detail = _("The chunked request body is malformed or incomplete.")
        return _body_refused(request, 400, detail)
    if len(body) > limit:
        return body_too_large_response(request)
    environ["CONTENT_LENGTH"] = str(len(body))
    # What WSGIRequest builds from a Content-Length (django.core.handlers.wsgi); nothing read
    # the request's stream before this middleware.
    request._stream = LimitedStream(io.BytesIO(body), len(body))
    return None


class RequestBodyLimitMiddleware:
    """413 for any request whose body is over ``settings.BEEM_MAX_BODY_BYTES``, whether it
    declares its length or is chunked (411 where the server cannot tell where a chunked body
    ends)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _declared_length(request) > max_body_bytes():
            return body_too_large_response(request)
        if _is_chunked(request) and "wsgi.input" in request.META:
            refused = _chunked_body_read(request)
            if refused is not None:
                return refused
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return body_too_large_response(request)
        return None
