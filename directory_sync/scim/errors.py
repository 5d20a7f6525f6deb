"""SCIM error responses (RFC 7644 §3.12), in one place.

Every error raised by the SCIM layer is a ``ScimError`` (a django-scim2 ``SCIMException``, so its
view dispatch renders it as a SCIM error body). ``scimType`` values are the RFC's; ``detail``
must tell an Entra administrator reading the provisioning log what to fix.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django_scim import exceptions as django_scim_exceptions
from pydantic import ValidationError
from scim2_models import SCIMException as Scim2ModelsError

from .. import records
from .constants import ERROR_SCHEMA


class ScimError(django_scim_exceptions.SCIMException):
    """A SCIM error answer: HTTP status, optional scimType and a readable detail."""

    def __init__(
        self,
        detail: str,
        *,
        status: int = 400,
        scim_type: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(str(detail), status=status, scim_type=scim_type)
        # SCIMException keeps the kwarg only when truthy; make the class default explicit.
        self.status = status
        self.scim_type = scim_type
        self.headers = headers or {}

    def headers_set(self, response) -> None:
        """Put the error's HTTP headers (e.g. a 405's Allow) on its answer."""
        for name, value in self.headers.items():
            response[name] = value

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schemas": [ERROR_SCHEMA],
            "detail": self.detail,
            # RFC 7644 §3.12: "status" is the HTTP status code as a string.
            "status": str(self.status),
        }
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


def invalid_value(detail: str) -> ScimError:
    return ScimError(detail, scim_type="invalidValue")


def invalid_syntax(detail: str) -> ScimError:
    return ScimError(detail, scim_type="invalidSyntax")


def invalid_filter(detail: str) -> ScimError:
    return ScimError(detail, scim_type="invalidFilter")


def invalid_path(detail: str) -> ScimError:
    return ScimError(detail, scim_type="invalidPath")


def too_many(detail: str) -> ScimError:
    # RFC 7644 §3.12 defines tooMany for filters; it is the one scimType that says "more than
    # this server will process in one request", so the per-request work limits use it too.
    return ScimError(detail, scim_type="tooMany")


def no_target(detail: str) -> ScimError:
    return ScimError(detail, scim_type="noTarget")


def mutability(detail: str) -> ScimError:
    return ScimError(detail, scim_type="mutability")


def uniqueness(detail: str) -> ScimError:
    return ScimError(detail, status=409, scim_type="uniqueness")


def not_found(resource_type: str, scim_id: str) -> ScimError:
    return ScimError(f"{resource_type} {scim_id} not found.", status=404)


def not_implemented(detail: str) -> ScimError:
    return ScimError(detail, status=501)


def method_not_allowed(method: str, path: str, allowed: Iterable[str]) -> ScimError:
    # RFC 9110 §15.5.6: a 405 carries Allow, the methods the target does support.
    allow = ", ".join(allowed)
    return ScimError(
        f"{method} is not supported on {path}; it supports {allow}.",
        status=405,
        headers={"Allow": allow},
    )


def precondition_failed(resource_type: str, scim_id: str, version: int) -> ScimError:
    # RFC 7644 §3.12: 412 "Failed to update. Resource has changed on the server."; no scimType.
    return ScimError(
        f'{resource_type} {scim_id} has changed: it is at version W/"{version}", not the '
        "one in If-Match. Read it again and retry.",
        status=412,
    )


def payload_too_large(limit: int) -> ScimError:
    return ScimError(f"The request body is larger than {limit} bytes.", status=413)


def from_scim2_models(exc: Scim2ModelsError) -> ScimError:
    """Translate an error raised by the scim2-models PATCH engine."""
    return ScimError(exc.detail, status=exc.status or 400, scim_type=exc.scim_type or None)


def from_validation_error(exc: ValidationError) -> ScimError:
    """Translate a pydantic validation error of a SCIM payload into ``invalidValue``.

    scim2-models raises its own SCIM errors as pydantic errors carrying ``scim_type`` in
    their context; the first one wins. Plain type errors (a number where a string belongs, a
    boolean that is not one) become ``invalidValue`` naming the attribute.
    """
    errors = exc.errors(include_url=False)
    for error in errors:
        ctx = error.get("ctx") or {}
        if ctx.get("scim_type"):
            return ScimError(error["msg"], scim_type=ctx["scim_type"])
    error = errors[0] if errors else {"loc": (), "msg": str(exc)}
    where = ".".join(str(part) for part in error.get("loc", ()) if not isinstance(part, int))
    detail = f"{where}: {error['msg']}" if where else error["msg"]
    return invalid_value(detail)


@contextmanager
def scim_errors(resource_type: str = "", scim_id: str = "") -> Iterator[None]:
    """The one translation of record-service and scim2-models exceptions into SCIM errors,
    around every adapter call that parses a payload or writes a record (``resource_type`` and
    ``scim_id`` name the target in a 404 or 412)."""
    try:
        yield
    except records.RecordNotFound:
        raise not_found(resource_type, scim_id) from None
    except records.VersionMismatch as exc:
        raise precondition_failed(resource_type, scim_id, exc.version) from None
    except records.RecordConflict as exc:
        raise uniqueness(
            f"A {resource_type.lower()} with {exc.attribute} {exc.value!r} already exists in "
            "this directory."
        ) from None
    except records.UnknownMembers as exc:
        listed = ", ".join(exc.ids[:5]) + (" …" if len(exc.ids) > 5 else "")
        raise invalid_value(f"These members are not users of this directory: {listed}.") from None
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    except Scim2ModelsError as exc:
        raise from_scim2_models(exc) from None
