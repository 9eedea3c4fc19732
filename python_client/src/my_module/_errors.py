"""The exceptions of my_module.

Argument errors are the built-ins a PyO3 ``Vec<u32>`` argument raises (``TypeError``,
``OverflowError``), and an expired timeout is the built-in ``TimeoutError``; everything that
goes wrong with the worker process is a :class:`WorkerError`, a ``RuntimeError``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple


class WorkerError(RuntimeError):
    """Something went wrong with the worker process (base class).

    Raised as such when the worker answers a request with an unexpected JSON-RPC error
    (``code``, ``data`` hold it) or when a closed :class:`~my_module.Worker` is used.
    """

    code: Optional[int] = None
    data: Any = None

    def __reduce__(self) -> Tuple[Any, ...]:
        # Keep the extra attributes when pickled (e.g. sent back by multiprocessing).
        return (self.__class__, self.args, self.__dict__)


class WorkerNotFoundError(WorkerError):
    """No worker executable could be found or started; the message says how to provide one."""


class WorkerCrashedError(WorkerError):
    """The worker process died while requests were in flight (or before it answered).

    ``returncode`` is its exit status (negative: killed by that signal, as in ``subprocess``),
    ``stderr_tail`` the last lines it wrote to stderr, ``pid`` its process id.
    """

    returncode: Optional[int] = None
    stderr_tail: Tuple[str, ...] = ()
    pid: Optional[int] = None

    def __init__(
        self,
        message: str,
        *,
        returncode: Optional[int] = None,
        stderr_tail: Sequence[str] = (),
        pid: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = tuple(stderr_tail)
        self.pid = pid


class ProtocolError(WorkerError):
    """The worker broke the wire contract (garbage on stdout, a bad reply, a version mismatch).

    The worker that did it is killed; the next call starts a fresh one.
    """
