"""What a process keeps in memory between requests, and one ``reset_all()`` that forgets it.

The SCIM auth cache, batched run counts and last-request times, the wake-ups known to be
pending, the request-log rows waiting to be written and the memoised Tenant URL paths live
in module globals of the modules that use them. Each of those modules registers here, at
import, the function that empties its state and the names of the globals it empties; this
module imports none of them, so it cannot be part of an import cycle.

``reset_all()`` runs between tests (tests/conftest.py) and in every Celery worker child when
it starts (``worker_process_init``): a forked child must neither write rows its parent
buffered nor reuse its parent's Redis socket. Gunicorn workers load the application after
the fork (no ``--preload``), so they start empty. tests/directory_sync/test_process_state.py
fails when a module keeps a mutable global that is not registered here.
"""

from collections.abc import Callable

from celery.signals import worker_process_init

_resets: dict[str, Callable[[], None]] = {}
# (module, global name) of every piece of state a registered reset empties.
_held: set[tuple[str, str]] = set()


def register(reset: Callable[[], None], *, holds: tuple[str, ...]) -> Callable[[], None]:
    """Have ``reset_all()`` call ``reset``, which empties the globals ``holds`` of its module."""
    _resets[f"{reset.__module__}.{reset.__qualname__}"] = reset
    _held.update((reset.__module__, name) for name in holds)
    return reset


def held() -> frozenset[tuple[str, str]]:
    """(module, global name) of all registered state."""
    return frozenset(_held)


def reset_all(**_signal_kwargs) -> None:
    """Forget every registered per-process cache and buffer (unwritten rows and counts are
    dropped, not written)."""
    for reset in list(_resets.values()):
        reset()


# A Celery worker child starts with the state its parent had when it forked.
worker_process_init.connect(reset_all, weak=False, dispatch_uid="beem_process_state_reset")
