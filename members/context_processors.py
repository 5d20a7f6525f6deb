"""Puts the administrator's organization, and the name of the directory it syncs with, into
every template."""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from .directory import directory_sync_status


def organization(request: HttpRequest) -> dict:
    org = getattr(request, "organization", None)
    if org is None:
        user = getattr(request, "user", None)
        admin = getattr(user, "administrator", None) if user and user.is_authenticated else None
        org = admin.organization if admin else None
    # Looked up only by the pages that name the directory ("Managed by Entra ID").
    directory_name = SimpleLazyObject(
        lambda: str(directory_sync_status(organization=org).directory_name) if org else ""
    )
    return {"current_organization": org, "directory_name": directory_name}
