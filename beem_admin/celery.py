"""The Celery app. Configuration comes from Django settings (``CELERY_*``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beem_admin.settings")

app = Celery("beem_admin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Restart a consumer that silently stopped receiving (see beem_admin.worker_watchdog).
from beem_admin.worker_watchdog import ConsumerWatchdog  # noqa: E402

app.steps["consumer"].add(ConsumerWatchdog)
