"""A bounded, first-come first-served queue for heavy work inside one server process.

Streamlit runs every browser session's script in its own thread of one process. Ten sessions that
each start a generation at once would otherwise run ten CPU-bound jobs side by side on a 2-core
machine: every one of them slows down about tenfold, memory grows with each, and a page that only
wants to render waits behind them. Here at most ``slots`` heavy jobs run at once (default: one core
is left free for rendering pages), the others wait in arrival order and are told their place.

Waiting is done in short sleeps that call ``on_wait`` each time: in a page that callback writes to the
page, and Streamlit stops a script at its next page call when the user presses Stop or the session
ends, so a closed tab leaves the queue instead of holding a place in it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator

SLOTS_ENV = "BATTGAI_MAX_JOBS"


def default_slots() -> int:
    """``BATTGAI_MAX_JOBS``, else one less than the CPU count (at least 1)."""
    if os.environ.get(SLOTS_ENV):
        return max(1, int(os.environ[SLOTS_ENV]))
    return max(1, (os.cpu_count() or 2) - 1)


class JobQueue:
    """At most ``slots`` holders at once; the rest wait in arrival order.

    Examples
    --------
    >>> q = JobQueue(slots=1)
    >>> with q.slot("demo"):
    ...     q.running()
    ['demo']
    """

    def __init__(self, slots: int | None = None):
        self.slots = slots or default_slots()
        self._cond = threading.Condition()
        self._tickets = itertools.count()
        self._waiting: list[tuple[int, str]] = []
        self._running: dict[int, str] = {}

    def running(self) -> list[str]:
        with self._cond:
            return list(self._running.values())

    def waiting(self) -> list[str]:
        with self._cond:
            return [name for _, name in self._waiting]

    @contextlib.contextmanager
    def slot(self, name: str, on_wait: Callable[[int, int], None] | None = None,
             poll: float = 0.5) -> Iterator[None]:
        """Hold one slot for the ``with`` block, waiting for it first if all are taken.

        Parameters
        ----------
        name : str
            What the job is, for :meth:`running` / :meth:`waiting`.
        on_wait : callable, optional
            Called as ``on_wait(place, running)`` every ``poll`` seconds while waiting: ``place`` is 1 for
            the next job to start. Whatever it raises leaves the queue and propagates.
        """
        ticket = next(self._tickets)
        with self._cond:
            self._waiting.append((ticket, name))
        try:
            while True:
                with self._cond:
                    place = [t for t, _ in self._waiting].index(ticket) + 1
                    if place == 1 and len(self._running) < self.slots:
                        self._waiting.pop(0)
                        self._running[ticket] = name
                        break
                    busy = len(self._running)
                if on_wait is not None:
                    on_wait(place, busy)
                with self._cond:
                    self._cond.wait(poll)
        except BaseException:
            with self._cond:
                self._waiting = [(t, n) for t, n in self._waiting if t != ticket]
                self._cond.notify_all()
            raise
        try:
            yield
        finally:
            with self._cond:
                del self._running[ticket]
                self._cond.notify_all()


_QUEUE: JobQueue | None = None
_LOCK = threading.Lock()


def queue() -> JobQueue:
    """The process-wide queue every page's heavy step goes through."""
    global _QUEUE
    with _LOCK:
        if _QUEUE is None:
            _QUEUE = JobQueue()
        return _QUEUE

