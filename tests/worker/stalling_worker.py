"""A real Celery worker of this project, with two test-only additions (never in production):

* the task ``beem_test.touch(path)`` writes a file, so a test sees that a task ran without a
  database;
* the remote-control command ``beem_test_stall_consumer`` puts the worker in the state kombu's
  Redis transport is known to leave it in after a broker restart (celery/kombu#2492): the
  callback that registers the queue poll (``on_poll_start``) is taken off the event loop, so
  the worker stays alive and idle and fetches nothing. ``{"always": true}`` also removes it
  again after every reconnect (a stall that a reconnect does not cure).

    python tests/worker/stalling_worker.py -l INFO -c 1 ...   (worker options)
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from celery.worker.control import control_command  # noqa: E402

from beem_admin.celery import app  # noqa: E402


@app.task(name="beem_test.touch")
def touch(path: str) -> None:
    Path(path).write_text("ran")


def _take_poll_off(loop) -> int:
    # Only the Redis transport's callback: the prefork pool has an on_poll_start of its own.
    callbacks = [
        cb
        for cb in list(loop.on_tick)
        if getattr(cb, "__name__", "") == "on_poll_start"
        and getattr(cb, "__module__", "") == "kombu.transport.redis"
    ]
    for callback in callbacks:
        loop.on_tick.discard(callback)
    return len(callbacks)


@control_command(args=[("always", bool)], signature="[always]")
def beem_test_stall_consumer(state, always=False):
    from kombu.asynchronous import get_event_loop
    from kombu.transport import redis as redis_transport

    if always:
        original = redis_transport.Transport.register_with_event_loop

        def register_then_stall(self, connection, loop):
            original(self, connection, loop)
            _take_poll_off(loop)

        redis_transport.Transport.register_with_event_loop = register_then_stall
    removed = _take_poll_off(get_event_loop())
    return {"removed": removed}


if __name__ == "__main__":
    # `celery -A beem_admin worker ...` itself (its exit code included), with the additions above.
    from celery.bin.celery import celery as celery_command

    celery_command.main(args=["-A", "beem_admin", "worker", *sys.argv[1:]], prog_name="celery")
