"""The shared default Worker behind the module-level functions: made on first use (in a fork child too), closed at exit."""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any, Iterable, List, Optional, Union

from ._errors import WorkerError
from ._worker import Out, Worker

_lock = threading.Lock()
_worker: Optional[Worker] = None
_exiting = False


def default_worker() -> Worker:
    """The shared Worker of :func:`calculate_squares`, made (again) if needed; WorkerNotFoundError, WorkerError at exit."""
    global _worker
    with _lock:  # (the shared global is read under its lock too)
        if _exiting:
            raise WorkerError("the interpreter is exiting: my_module's default worker is closed")
        if _worker is None or _worker.closed:
            _worker = Worker()
        return _worker


def calculate_squares(numbers: Iterable[Any], *, timeout: Optional[float] = None,
                      out: Optional[Out] = None) -> Union[List[int], Out]:
    """Return the exact squares of ``numbers``, in order, computed by the shared worker: the
    drop-in for PyO3's ``calculate_squares(numbers: Vec<u32>) -> Vec<u64>``. Parameters and
    exceptions as :meth:`Worker.calculate_squares` (``timeout`` None: no limit)."""
    return default_worker().calculate_squares(numbers, timeout=timeout, out=out)


async def calculate_squares_async(numbers: Iterable[Any], *, timeout: Optional[float] = None,
                                  out: Optional[Out] = None) -> Union[List[int], Out]:
    """``await``-able :func:`calculate_squares` (see :meth:`Worker.calculate_squares_async`)."""
    return await default_worker().calculate_squares_async(numbers, timeout=timeout, out=out)


def _close_at_exit() -> None:
    global _exiting
    with _lock:
        _exiting = True
        worker = _worker
    if worker is not None:
        worker.close()


def _reinit_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


atexit.register(_close_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
