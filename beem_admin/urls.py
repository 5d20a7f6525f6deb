from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from directory_sync.health import healthz
from directory_sync.metrics import metrics_view
from directory_sync.scim.token_views import SyncRevokeTokenView, SyncTokenView
from members.forms import LoginForm

urlpatterns = [
    # SCIM 2.0 for Entra ID; the Tenant URL is /scim/v2/<organization id>. First: Django tries
    # the patterns in order, and nearly every request the service gets is Entra's.
    path("scim/v2/<int:organization_id>/", include("directory_sync.scim.urls")),
    path("", RedirectView.as_view(pattern_name="members:member_list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("django-admin/", admin.site.urls),
    path("members/", include("members.urls")),
    path("settings/directory-syncs/", include("directory_sync.urls")),
    # OAuth2 for Entra ID: only the token (and revocation) endpoints, none of
    # django-oauth-toolkit's application management pages.
    path("o/token/", SyncTokenView.as_view(), name="oauth2_token"),
    path("o/revoke_token/", SyncRevokeTokenView.as_view(), name="oauth2_revoke_token"),
    # Operations (README "Operations"); HealthzMiddleware answers /healthz first.
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
]

if settings.BEEM_BENCH_ENDPOINT:
    from bench.views import ping

    # Second, after the SCIM routes, like a SCIM request's view.
    urlpatterns[1:1] = [
        path("scim/bench/ping", ping, name="bench_ping"),
        path("bench/ping", ping, name="bench_ping_ui"),
    ]
