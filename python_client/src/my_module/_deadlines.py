"""Deadlines of Futures nobody may be waiting on (from ``submit`` and the async API).

One daemon thread per :class:`~my_module.Worker`, started on first use, sleeps until the
earliest deadline and expires the calls that are still running then (each expiry sends
``$/cancel``, which never blocks). A blocking caller of ``calculate_squares`` does not need it:
it waits with a timeout and expires its own call.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from typing import List, Optional, Tuple

from ._calls import Call


class DeadlineWatcher:
    """Expires :class:`Call` objects whose deadline passes before they finish.

    It holds them weakly: a call that finished stays in the heap until its deadline (or the
    next compaction), and must not keep its result alive there after its caller let go of it
    (a 200,000-number result is ~9 MB; a soak saw hundreds of them pinned). A call that is
    still in flight is held strongly elsewhere (by its connection) for as long as it matters.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: List[Tuple[float, int, "weakref.ReferenceType[Call]"]] = []
        self._order = itertools.count()
        self._compact_at = 256
        self._thread: Optional[threading.Thread] = None
        self._stopped = False

    def watch(self, call: Call) -> None:
        """Expire ``call`` at its deadline (it must have one) unless it is done by then."""
        assert call.deadline is not None
        with self._cond:
            if self._stopped:
                return
            if len(self._heap) >= self._compact_at:
                # Finished calls stay in the heap until their deadline; drop them in bulk.
                self._heap = [entry for entry in self._heap if _pending(entry[2])]
                heapq.heapify(self._heap)
                self._compact_at = max(256, 2 * len(self._heap))
            heapq.heappush(self._heap, (call.deadline, next(self._order), weakref.ref(call)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2]() is call:
                self._cond.notify()

    def stop(self) -> None:
        """Stop the thread; calls still watched are left to their owners."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, ref = heapq.heappop(self._heap)
                        call = ref()
                        if call is None:
                            continue  # nobody holds it any more: nothing left to expire
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
            call.expire()
            del call


def _pending(ref: "weakref.ReferenceType[Call]") -> bool:
    call = ref()
    return call is not None and not call.future.done()
