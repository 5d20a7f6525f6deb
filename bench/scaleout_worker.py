"""The Celery app of the scale-out soak's workers: Beem's app, with every drain recorded.

    celery -A bench.scaleout_worker worker -n scale-a@%h ...   (started by bench/scaleout.py)

The soak checks that one organization's changes are applied by one worker at a time. The
engine holds its per-organization drain lock around ``_events_drain``; this module wraps that
function in each worker process and appends one JSON line when a drain starts (the lock is
held) and one when it ends (before the lock is released) to ``$BENCH_DRAIN_LOG/drains-<node>-
<pid>.jsonl``: node name, process id, organization, wall-clock time, events finished. Two
intervals of one organization that overlap mean two drains applied its changes at once. A
drain whose worker was killed has a start and no end; the soak ends it at the kill.

Nothing else differs from ``celery -A beem_admin``: same app object, settings and tasks.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

from celery.signals import worker_process_init

from beem_admin.celery import app

__all__ = ["app"]

_lock = threading.Lock()


def _record(line: dict) -> None:
    directory = os.environ.get("BENCH_DRAIN_LOG")
    if not directory:
        return
    path = os.path.join(directory, f"drains-{line['node']}-{os.getpid()}.jsonl")
    with _lock, open(path, "a") as out:
        out.write(json.dumps(line) + "\n")
        out.flush()


def _instrument() -> None:
    from celery import current_task

    from directory_sync.engine import drain

    inner = drain._events_drain
    if getattr(inner, "bench_observed", False):
        return

    def observed(*, organization_id: int, batch_size: int) -> int:
        node = current_task.request.hostname if current_task else "unknown"
        drain_id = uuid.uuid4().hex
        common = {"id": drain_id, "node": node, "pid": os.getpid(), "org": organization_id}
        _record({**common, "phase": "start", "t": time.time()})
        finished, error = None, ""
        try:
            finished = inner(organization_id=organization_id, batch_size=batch_size)
            return finished
        except BaseException as exc:  # a transient error: the task retries; the drain ended
            error = exc.__class__.__name__
            raise
        finally:
            _record(
                {**common, "phase": "end", "t": time.time(), "finished": finished, "error": error}
            )

    observed.bench_observed = True
    drain._events_drain = observed


@worker_process_init.connect
def _on_worker_process_init(**_kwargs) -> None:
    _instrument()
