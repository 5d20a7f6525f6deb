"""A watchdog for a Celery worker whose consumer silently stops receiving.

After a Redis restart, kombu's Redis transport can come back "catatonic": the worker is alive,
answers pings and its pool is idle, but its queue poll is no longer registered with the event
loop, so the tasks waiting in Redis are never fetched (celery/celery#8030, #10205, #10302;
celery/kombu#2492, #2629 — several fixes so far, none complete). Beat's sweep keeps
re-dispatching the pending change events, but nothing consumes them.

This consumer bootstep checks every ``BEEM_WORKER_WATCHDOG_SECONDS`` (0 disables it), from the
worker's own event loop: when the queues this worker consumes had ready messages at two checks
in a row, the consumer could have taken one (its prefetch window was not full) and yet
received nothing in between, the consumer is stalled. The watchdog then raises a connection
error inside the event loop — the same path as a lost broker connection — so Celery tears the
connection down and re-registers everything. If that does not help either, it shuts the worker
down (exit code 70) for its process manager to start a fresh one (README: run the worker under
a supervisor that restarts it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from celery import bootsteps
from celery.signals import task_received
from celery.worker import state as worker_state

logger = logging.getLogger(__name__)

# Forced reconnects without a task received in between before the worker exits instead.
RECONNECTS_BEFORE_EXIT = 2
EXIT_CODE = 70  # EX_SOFTWARE


class ConsumerStalled(ConnectionError):
    """Raised in the worker's event loop: Celery handles it as a lost broker connection."""


# Tasks received by this worker process (the consumer runs in the main process).
_received = 0


@task_received.connect(dispatch_uid="beem_worker_watchdog_received")
def _count_received(sender=None, **kwargs) -> None:
    global _received
    _received += 1


def received_count() -> int:
    return _received


@dataclass
class Observation:
    ready: int  # messages waiting in the worker's queues
    can_consume: bool  # the prefetch window had room for one more
    received: int  # tasks received so far


class StallDetector:
    """The decision, apart from Celery so it can be tested: ``observe`` returns ``None``,
    ``"reconnect"`` or ``"exit"``."""

    def __init__(self, reconnects_before_exit: int = RECONNECTS_BEFORE_EXIT):
        self.reconnects_before_exit = reconnects_before_exit
        self.previous: Observation | None = None
        self.reconnects = 0
        self.last_received: int | None = None

    def observe(self, now: Observation) -> str | None:
        previous, self.previous = self.previous, now
        if self.last_received is not None and now.received != self.last_received:
            self.reconnects = 0  # it is consuming again
        self.last_received = now.received
        stalled = (
            previous is not None
            and previous.ready > 0
            and now.ready > 0
            and previous.can_consume
            and now.can_consume
            and now.received == previous.received
        )
        if not stalled:
            return None
        self.previous = None  # the next verdict needs two fresh checks
        if self.reconnects >= self.reconnects_before_exit:
            return "exit"
        self.reconnects += 1
        return "reconnect"


def _queue_ready(consumer) -> int:
    """Ready messages in the queues this worker consumes, read on a separate connection."""
    names = [queue.name for queue in consumer.task_consumer.queues]
    total = 0
    with consumer.app.connection_for_read() as connection:
        # This runs in the worker's event loop: fail fast, never sleep between attempts.
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        channel = connection.default_channel
        for name in names:
            try:
                total += channel.queue_declare(queue=name, passive=True).message_count
            except connection.channel_errors:
                # No such queue (an empty Redis list does not exist): nothing waits there.
                channel = connection.channel()
    return total


def _can_consume(consumer) -> bool:
    qos = getattr(getattr(consumer.task_consumer, "channel", None), "qos", None)
    if qos is not None and hasattr(qos, "can_consume"):
        return bool(qos.can_consume())  # kombu's virtual transports (Redis)
    limit = getattr(consumer.pool, "num_processes", None) or consumer.app.conf.worker_concurrency
    return len(worker_state.active_requests) < (limit or 1)


class ConsumerWatchdog(bootsteps.StartStopStep):
    """Consumer bootstep: registers the periodic check on the worker's timer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c, **kwargs):
        from django.conf import settings

        self.interval = float(settings.BEEM_WORKER_WATCHDOG_SECONDS)
        self.detector = StallDetector()
        self.tref = None

    def start(self, c):
        if self.interval > 0 and self.tref is None:
            self.detector.previous = None  # a new connection starts a new observation
            self.tref = c.timer.call_repeatedly(self.interval, self.check, (c,))

    def stop(self, c):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

    def check(self, c) -> None:
        if c.task_consumer is None:
            return
        try:
            now = Observation(
                ready=_queue_ready(c), can_consume=_can_consume(c), received=received_count()
            )
        except Exception as exc:  # broker down: the consumer's own retry handles it
            logger.debug("worker watchdog could not read the queues: %r", exc)
            self.detector.previous = None
            return
        verdict = self.detector.observe(now)
        if verdict == "reconnect":
            logger.error(
                "worker consumer stalled: %s messages wait while it could take one and it "
                "received none for %ss; reconnecting to the broker",
                now.ready,
                self.interval,
            )
            raise ConsumerStalled("consumer stalled; reconnecting")
        if verdict == "exit":
            logger.critical(
                "worker consumer still stalled after %s reconnects; shutting the worker down "
                "(exit code %s) so its supervisor starts a fresh one",
                self.detector.reconnects,
                EXIT_CODE,
            )
            worker_state.should_stop = EXIT_CODE
