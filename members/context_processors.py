"""Puts the administrator's organization into every template."""

from django.http import HttpRequest


def organization(request: HttpRequest) -> dict:
    org = getattr(request, "organization", None)
    if org is None:
        user = getattr(request, "user", None)
        admin = getattr(user, "administrator", None) if user and user.is_authenticated else None
        org = admin.organization if admin else None
    return {"current_organization": org}
