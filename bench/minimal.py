"""The harness's second ceiling: a minimal Django WSGI app (no middleware, no database).

    gunicorn bench.minimal:application

It answers the bare endpoint's path with the same JSON as ``bench.views.ping``, through
Django's handler and URL resolver only, so the full stack's figures can be read as a share of
what Django itself allows on the machine, in the same gunicorn shape.
"""

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-minimal",  # no sessions, cookies or signing here
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
)

import django  # noqa: E402 (settings first)

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.urls import path  # noqa: E402

from bench.views import ping  # noqa: E402

urlpatterns = [path("scim/bench/ping", ping), path("bench/ping", ping)]
application = get_wsgi_application()
