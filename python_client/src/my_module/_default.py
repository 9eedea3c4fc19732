"""The shared default :class:`~my_module.Worker` behind the module-level functions.

Created on first use, shut down at interpreter exit (``atexit``). A fork child gets its own on
first use (the Worker forgets the parent's process in the child).
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any, Iterable, List, Optional

from ._errors import WorkerError
from ._worker import Worker

_lock = threading.Lock()
_worker: Optional[Worker] = None
_exiting = False


def default_worker() -> Worker:
    """Return the shared Worker used by :func:`calculate_squares`, creating it if needed.

    A closed default worker is replaced by a new one on the next use (until interpreter exit).

    :raises WorkerNotFoundError: no worker executable was found.
    :raises WorkerError: the interpreter is exiting.
    """
    global _worker
    worker = _worker
    if worker is not None and not worker.closed:
        return worker
    with _lock:
        if _exiting:
            raise WorkerError("the interpreter is exiting: my_module's default worker is closed")
        if _worker is None or _worker.closed:
            _worker = Worker()
        return _worker


def calculate_squares(numbers: Iterable[Any], *, timeout: Optional[float] = None) -> List[int]:
    """Return the exact squares of ``numbers``, in order, computed by the shared worker.

    The drop-in for the PyO3 function ``calculate_squares(numbers: Vec<u32>) -> Vec<u64>``.

    :param numbers: any iterable of ints in ``0 <= n <= 2**32 - 1`` (list, tuple, range,
        generator, ``array.array``, numpy integer array; ``bool`` counts as 0/1 as in PyO3).
    :param timeout: seconds before the call is cancelled and ``TimeoutError`` is raised
        (None: no limit).
    :raises TypeError: ``numbers`` is a str, bytes, mapping, None or not iterable, or an
        element is not an integer (the message names its index).
    :raises OverflowError: an element is negative or above ``2**32 - 1`` (index named).
    :raises TimeoutError: the call did not finish within ``timeout``.
    :raises WorkerNotFoundError: no worker executable was found (the message says how to
        build one or point at it).
    :raises WorkerCrashedError: the worker died, and died again on the one retry.
    :raises ProtocolError: the worker broke the wire contract (it is replaced).
    """
    return default_worker().calculate_squares(numbers, timeout=timeout)


async def calculate_squares_async(
    numbers: Iterable[Any], *, timeout: Optional[float] = None
) -> List[int]:
    """``await``-able :func:`calculate_squares`; does not block the event loop on the worker.

    Cancelling the awaiting task cancels the request in the worker. Raises what
    :func:`calculate_squares` raises.
    """
    return await default_worker().calculate_squares_async(numbers, timeout=timeout)


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
