"""The Django admin at /django-admin/, for Beem's operators only."""

from functools import wraps

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import Http404, HttpRequest


def is_organization_administrator(request: HttpRequest) -> bool:
    """Organization administrators are staff (the suite needs it) but use the suite only."""
    # Imported here: this module is loaded with INSTALLED_APPS, before models can be.
    from members.permissions import organization_for_user

    return not request.user.is_superuser and organization_for_user(request.user) is not None


class BeemAdminSite(admin.AdminSite):
    """Answers 404 to organization administrators on every page, the login page included,
    instead of Django's "You don't have permission to view or edit anything" index (README,
    "Tenants stay apart"). Superusers and staff without an organization keep the admin."""

    def admin_view(self, view, cacheable=False):
        # Every admin page but the login goes through admin_view (ModelAdmin URLs included).
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def wrapper(request, *args, **kwargs):
            if is_organization_administrator(request):
                raise Http404
            return inner(request, *args, **kwargs)

        return wrapper

    def login(self, request, extra_context=None):
        if is_organization_administrator(request):
            raise Http404
        return super().login(request, extra_context)


class BeemAdminConfig(AdminConfig):
    default_site = "beem_admin.admin_site.BeemAdminSite"
