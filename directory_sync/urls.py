"""Basic Settings → Directory Syncs → Sync with Entra ID (mounted at /settings/directory-syncs/)."""

from django.urls import path

from . import okta_views, review_views, views

app_name = "directory_sync"

urlpatterns = [
    path("", views.sync_list, name="sync_list"),
    path("entra/", views.sync_status, name="sync_status"),
    path("entra/status.json", views.sync_status_json, name="sync_status_json"),
    path("entra/setup/", views.sync_settings_form, name="sync_settings_form"),
    path("entra/connect/", views.sync_entra, name="sync_entra"),
    path("entra/connect/rotate/", views.credentials_rotate, name="credentials_rotate"),
    path("entra/stop/", views.sync_stop, name="sync_stop"),
    path("entra/reactivate/", views.sync_reactivate, name="sync_reactivate"),
    path("entra/runs/", views.run_list, name="run_list"),
    path("entra/runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("entra/review/", review_views.review_list, name="review_list"),
    path(
        "entra/review/<int:pk>/department/",
        review_views.review_department_choose,
        name="review_department_choose",
    ),
    path(
        "entra/review/<int:pk>/duplicate/",
        review_views.review_duplicate_resolve,
        name="review_duplicate_resolve",
    ),
    path("entra/audit/", views.audit_list, name="audit_list"),
    path("okta/connect/", okta_views.sync_okta, name="sync_okta"),
    path("okta/connect/rotate/", okta_views.api_token_rotate, name="api_token_rotate"),
    # One fixed route per directory (no value in the URL to aim anywhere else).
    path(
        "switch/entra-id/",
        okta_views.directory_switch,
        {"directory": "entra_id"},
        name="directory_switch_entra_id",
    ),
    path(
        "switch/okta/",
        okta_views.directory_switch,
        {"directory": "okta"},
        name="directory_switch_okta",
    ),
]
