"""The exceptions of my_module: argument errors and timeouts are the built-ins PyO3 raises
(``TypeError``, ``OverflowError``, ``TimeoutError``); worker failures are a :class:`WorkerError`."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple


class WorkerError(RuntimeError):
    """Something went wrong with the worker process (base class); raised as such for an
    unexpected JSON-RPC error reply (``code``, ``data`` hold it) or a closed Worker."""

    code: Optional[int] = None
    data: Any = None

    def __reduce__(self) -> Tuple[Any, ...]:
        # Keep the extra attributes when pickled (e.g. sent back by multiprocessing).
        return (self.__class__, self.args, self.__dict__)


class WorkerNotFoundError(WorkerError):
    """No worker executable could be found or started; the message says where it looked and what to do."""


class WorkerCrashedError(WorkerError):
    """The worker died with requests in flight or before it answered: ``returncode`` (negative:
    that signal), ``stderr_tail`` (its last stderr lines), ``pid``."""

    def __init__(self, message: str, *, returncode: Optional[int] = None, stderr_tail: Sequence[str] = (),
                 pid: Optional[int] = None) -> None:
        super().__init__(message)
        self.returncode, self.stderr_tail, self.pid = returncode, tuple(stderr_tail), pid


class ProtocolError(WorkerError):
    """The worker broke the wire contract (garbage, a bad reply, a version mismatch); it is
    killed and the next call starts a fresh one."""


for _public in (WorkerError, WorkerNotFoundError, WorkerCrashedError, ProtocolError):
    _public.__module__ = "my_module"  # where a user imports them from: tracebacks and reprs say my_module.WorkerError
