"""SCIM 2.0 routes under the Tenant URL ``/scim/v2/<organization id>/`` (django-scim2's layout).

Mounted by ``beem_admin/urls.py`` with the ``scim`` namespace that django-scim2 reverses.
"""

from django.urls import re_path

from . import resource_views, views

app_name = "scim"

# "[/]*": a Tenant URL pasted with a trailing slash makes Entra call ".../scim/v2/<id>//Users".
# Written as a class, not "^/*": Django's check urls.W002 flags patterns starting with "^/", and
# `manage.py check --deploy` must stay clean (tests/hardening/test_deploy_settings.py).
urlpatterns = [
    re_path(r"^$", views.NotFoundView.as_view(), name="root"),
    re_path(r"^[/]*Users/\.search$", resource_views.UsersSearchView.as_view(), name="users-search"),
    re_path(
        r"^[/]*Groups/\.search$", resource_views.GroupsSearchView.as_view(), name="groups-search"
    ),
    re_path(r"^[/]*\.search$", views.RootSearchView.as_view(), name="search"),
    # Not supported: answered 501 with a SCIM body (RFC 7644 §3.12), as advertised by
    # /ServiceProviderConfig (bulk false) and by the absence of /Me.
    re_path(r"^[/]*Me$", views.NotImplementedView.as_view(), name="me"),
    re_path(r"^[/]*Bulk$", views.NotImplementedView.as_view(), name="bulk"),
    # "/?": ".../Users/" and ".../Users/<id>/" are the same endpoints (issue 15).
    re_path(
        r"^[/]*Users(?:/(?P<uuid>[^/]+))?/?$", resource_views.UsersView.as_view(), name="users"
    ),
    re_path(
        r"^[/]*Groups(?:/(?P<uuid>[^/]+))?/?$", resource_views.GroupsView.as_view(), name="groups"
    ),
    re_path(
        r"^[/]*ServiceProviderConfig$",
        views.ServiceProviderConfigView.as_view(),
        name="service-provider-config",
    ),
    re_path(
        r"^[/]*ResourceTypes(?:/(?P<uuid>[^/]+))?$",
        views.ResourceTypesView.as_view(),
        name="resource-types",
    ),
    re_path(r"^[/]*Schemas(?:/(?P<uuid>[^/]+))?$", views.SchemasView.as_view(), name="schemas"),
    re_path(r"^.*$", views.NotFoundView.as_view(), name="not-found"),
]
