"""Who may use the admin suite, and which organization a request is scoped to.

Only staff users linked to an organization (``members.Administrator``) may use the suite.
Every suite view sets ``request.organization`` from the logged-in administrator, and every
read or write in that view is filtered by it: an id from another organization answers 404,
exactly like an id that does not exist, so tenants cannot even probe each other's ids.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from .models import Organization


def organization_for_user(user) -> Organization | None:
    """The organization ``user`` administers, or None when they may not use the suite."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return None
    administrator = getattr(user, "administrator", None)
    return administrator.organization if administrator is not None else None


def _resolve(request: HttpRequest) -> HttpResponse | None:
    """Set ``request.organization``; return the refusal response when there is none."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    organization = organization_for_user(request.user)
    if organization is None:
        # Logged in but not an administrator of any organization (or not staff): a plain 403
        # rather than a login redirect, which would loop for an already logged-in user.
        raise PermissionDenied
    request.organization = organization
    return None


def administrator_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Decorator for function views: login + administrator check, sets request.organization."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        refusal = _resolve(request)
        if refusal is not None:
            return refusal
        return view(request, *args, **kwargs)

    return wrapper


class AdministratorRequiredMixin:
    """The same check for class-based views (put it first in the bases)."""

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        refusal = _resolve(request)
        if refusal is not None:
            return refusal
        return super().dispatch(request, *args, **kwargs)
