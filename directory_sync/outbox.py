"""The change-event outbox: every directory write appends an event in the same transaction.

After the transaction commits, the organization's apply job is *woken*, not sent the event:
``directory_sync.apply_change_events`` drains every pending event of the organization in
batches (``engine.events_drain``). Wake-ups are deduplicated per organization for
``BEEM_APPLY_WAKEUP_SECONDS`` with a cache key (``SET NX``) and the job is sent with that same
countdown, so a burst of 800 writes a second sends about one job a second, and every write
that found the key already set committed before the job that key announced starts reading.

If the broker is down the events simply stay pending and the beat sweep
(``directory_sync.redispatch_pending_events``) or ``manage.py directory_sync redispatch``
wakes the organization later. Nothing is lost.

The outbox sits below the tasks (the apply task drains what it queues, its failure handler and
the sweep wake organizations through it), so it does not import them: the app's ``ready()``
hands it the apply task (``apply_job_register``).
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from . import process_state
from .models import ChangeEvent, DirectoryRecord, ProvisioningRun
from .store.records import event_insert

logger = logging.getLogger(__name__)

WAKEUP_KEY = "beem:apply-wakeup:{organization_id}"


def change_event_append(
    *,
    record: DirectoryRecord,
    kind: str,
    run: ProvisioningRun | None = None,
    request_id: str = "",
) -> ChangeEvent:
    """Append an outbox event for ``record`` at its current version; wake the job after commit."""
    event = event_insert(
        record=record, kind=kind, run_id=run.pk if run is not None else None, request_id=request_id
    )
    wake_after_commit(organization_id=record.organization_id)
    return event


def wake_after_commit(*, organization_id: int) -> None:
    """Wake the organization's apply job once the current transaction commits."""
    transaction.on_commit(lambda: organization_wake(organization_id=organization_id))


# The Celery task that drains an organization's pending events (tasks.apply_change_events).
_apply_job = None


def apply_job_register(task) -> None:
    """Called once by ``DirectorySyncConfig.ready()``."""
    global _apply_job
    _apply_job = task


def _apply_task():
    if _apply_job is None:
        raise RuntimeError("no apply job registered: DirectorySyncConfig.ready() has not run")
    return _apply_job


def _eager() -> bool:
    from beem_admin.celery import app

    return bool(app.conf.task_always_eager)


def organization_wake(*, organization_id: int, force: bool = False) -> bool:
    """Make sure an apply job for the organization runs soon; False when the broker refused.

    Cheap on the hot path: one cache ``SET NX`` per write, and a broker publish only for the
    first write of each wake-up window. ``force`` (the sweep) skips the deduplication.
    Never raises: a pending event is picked up by the sweep.
    """
    apply_change_events = _apply_task()
    if _eager():
        # Embedded mode (make run, tests): apply now, inside this request.
        apply_change_events.delay(organization_id)
        return True
    # Whole seconds (the cache API's unit); the job's countdown is the same window, so it
    # starts reading only once the key expired: every write that found the key set had
    # committed by then. 0 disables the deduplication.
    window = max(0, settings.BEEM_APPLY_WAKEUP_SECONDS)
    if not force and window:
        try:
            if not _wakeup_claim(organization_id, window):
                return True
        except Exception:  # cache down: wake without deduplicating
            logger.warning("cache unavailable; organization %s woken anyway", organization_id)
    try:
        apply_change_events.apply_async((organization_id,), countdown=0 if force else window)
    except Exception:  # any broker error; the events stay pending
        logger.warning(
            "broker unavailable; change events of organization %s stay pending", organization_id
        )
        return False
    return True


_redis_client: tuple[str, object] | None = None


def _redis():
    """A redis-py client on ``REDIS_URL`` (None without it): a plain ``SET NX`` costs a
    fraction of the CPU of Django's cache API (a client object, pickling) per call."""
    global _redis_client
    url = settings.REDIS_URL
    if not url:
        return None
    if _redis_client is None or _redis_client[0] != url:
        import redis

        # Short timeouts: a dead Redis must not hold a SCIM response (the job is sent anyway).
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        _redis_client = (url, client)
    return _redis_client[1]


# organization id -> monotonic time before which a wake-up already announced (by this process
# or another) is known not to have started its job: a write committed before then is covered
# and need not ask Redis again (saves the SET NX round trip per write).
_covered_until: dict[int, float] = {}
# Taken off what Redis reports left of a window: the report's travel time and clock steps.
_COVER_MARGIN_SECONDS = 0.05


def _wakeup_claim(organization_id: int, window: int) -> bool:
    """True when this write opens a wake-up window for the organization (SET NX EX).

    A window's job is sent with the window as countdown when its key is set, so it starts no
    sooner than the key expires. When the key is found set, its remaining lifetime (PTTL, in
    the same round trip) tells until when later writes of this process are covered too; they
    then skip Redis. Every write that skips has committed (this runs after commit) before the
    key expires, as every write that found the key set always had.
    """
    now = time.monotonic()
    if now < _covered_until.get(organization_id, 0.0):
        return False
    key = WAKEUP_KEY.format(organization_id=organization_id)
    client = _redis()
    if client is None:
        return cache.add(key, 1, timeout=window)
    pipe = client.pipeline(transaction=False)
    pipe.set(key, 1, nx=True, ex=window)
    pipe.pttl(key)
    claimed, left_ms = pipe.execute()
    left = window if claimed else (left_ms or 0) / 1000
    if left > _COVER_MARGIN_SECONDS:
        if len(_covered_until) >= 10_000:
            _covered_until.clear()
        _covered_until[organization_id] = now + left - _COVER_MARGIN_SECONDS
    return bool(claimed)


def wakeups_covered_forget() -> None:
    """Forget which wake-ups this process knows are pending (tests)."""
    _covered_until.clear()


def _redis_forget() -> None:
    global _redis_client
    _redis_client = None


process_state.register(wakeups_covered_forget, holds=("_covered_until",))
process_state.register(_redis_forget, holds=("_redis_client",))


def wakeup_window_close(*, organization_id: int) -> None:
    """End the organization's wake-up window now (tests; an operator's nudge)."""
    _covered_until.pop(organization_id, None)
    key = WAKEUP_KEY.format(organization_id=organization_id)
    client = _redis()
    if client is not None:
        client.delete(key)
    else:
        cache.delete(key)


def change_event_dispatch(*, event_ids: list[int], woken: set[int] | None = None) -> int:
    """Wake the organizations of ``event_ids`` now (the sweep); returns how many events are
    covered by a wake-up the broker accepted. Stops at the first broker error.

    ``woken``: organizations already woken by this sweep (not woken twice); updated.
    """
    rows = list(ChangeEvent.objects.filter(pk__in=event_ids).values_list("pk", "organization_id"))
    by_org: dict[int, list[int]] = {}
    for pk, organization_id in rows:
        by_org.setdefault(organization_id, []).append(pk)
    sent: list[int] = []
    woken = set() if woken is None else woken
    for organization_id, pks in by_org.items():
        if organization_id not in woken:
            if not organization_wake(organization_id=organization_id, force=True):
                break
            woken.add(organization_id)
        sent += pks
    if sent:
        ChangeEvent.objects.filter(pk__in=sent, status=ChangeEvent.Status.PENDING).update(
            dispatched_at=timezone.now()
        )
    return len(sent)
