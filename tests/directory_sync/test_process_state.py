"""directory_sync.process_state: one reset_all() forgets every per-process cache and buffer."""

import importlib
import pkgutil
import time

import pytest

import beem_admin
import directory_sync
import members
from directory_sync import outbox, process_state

# Module globals that hold no state worth forgetting: pure memos of code and settings, and
# Celery's per-task logging tokens (popped when their task ends).
STATELESS = {
    ("directory_sync.store.records", "_converters_cache"),  # per database vendor, from the models
    ("directory_sync.store.db", "_statements"),  # statement text -> its name and $n text
    ("beem_admin.logging", "_task_tokens"),
    # The registry itself.
    ("directory_sync.process_state", "_resets"),
    ("directory_sync.process_state", "_held"),
    # The background flusher's registry of flush functions (code, filled at import).
    ("directory_sync.flusher", "_flushes"),
}


def _product_modules():
    for package in (beem_admin, directory_sync, members):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" in info.name or ".management" in info.name:
                continue
            yield importlib.import_module(info.name)


def _state(held) -> dict[tuple[str, str], object]:
    return {(module, name): getattr(importlib.import_module(module), name) for module, name in held}


@pytest.fixture
def everything_kept(settings, monkeypatch):
    """Nothing is written for an hour: every request's bookkeeping stays in the process."""
    settings.BEEM_REQUEST_LOG_FLUSH_SECONDS = 3600
    settings.BEEM_RUN_COUNT_FLUSH_SECONDS = 3600
    settings.BEEM_SCIM_AUTH_CACHE_SECONDS = 3600
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"
    monkeypatch.setattr("directory_sync.flusher.BACKGROUND_FLUSH", False)


def test_reset_all_empties_every_cache_and_buffer_a_scim_process_fills(
    scim, organization, everything_kept
):
    scim.get('/Users?filter=userName+eq+"0b5c9a57-9d5e-4d4b-8d43-1a8b6f0e2c11"')
    created = scim.post(
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "sara@contoso.com",
            "externalId": "sara-ext",
            "active": True,
            "emails": [{"type": "work", "primary": True, "value": "sara@contoso.com"}],
            "phoneNumbers": [{"type": "mobile", "value": "+966512345678"}],
        },
    )
    assert created.status_code == 201, created.content
    # Embedded mode applies at once and never asks Redis: as a write with a worker would.
    outbox._covered_until[organization.pk] = time.monotonic() + 60
    outbox._redis()

    filled = _state(process_state.held())
    # The drain lock's kept connection (PostgreSQL): no apply job runs inside this test's
    # transaction; tests/directory_sync/store/test_db.py fills and resets it.
    filled.pop(("directory_sync.store.db", "_lock_connections"))
    # The background flusher's kept connection: the flusher is off in tests;
    # tests/directory_sync/test_flusher.py fills and resets it.
    filled.pop(("directory_sync.flusher", "_flusher_connections"))
    assert [key for key, value in filled.items() if not value] == []

    process_state.reset_all()

    assert {key: value for key, value in _state(process_state.held()).items() if value} == {}


def test_every_mutable_module_global_of_the_product_is_registered():
    """A cache or buffer added as a module-level dict, list or set without registering its
    reset with process_state would leak between tests and into forked workers."""
    found = {
        (module.__name__, name)
        for module in _product_modules()
        for name, value in vars(module).items()
        if not name.startswith("__")
        and name.lstrip("_")[:1].islower()
        and name != "urlpatterns"
        and isinstance(value, dict | list | set)
    }

    assert found - process_state.held() - STATELESS == set()
    assert ("directory_sync.scim.auth", "_cache") in process_state.held()


def test_a_celery_worker_child_starts_with_nothing_its_parent_kept():
    from celery.signals import worker_process_init

    outbox._covered_until[1] = time.monotonic() + 60

    worker_process_init.send(sender=None)

    assert outbox._covered_until == {}
