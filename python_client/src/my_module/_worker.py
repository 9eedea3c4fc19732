"""The public handle on a worker process: :class:`Worker`."""

from __future__ import annotations

import concurrent.futures
import copy
import weakref
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, TypeVar, Union

from . import _convert, _requests
from ._locate import Command, find_worker
from ._methods import CALCULATE_SQUARES
from ._protocol import ENCODING_JSON, ENCODING_PACKED, ENCODING_SHM
from ._session import Options, Session

Out = TypeVar("Out")  # the caller's buffer, returned filled


class Worker:
    """A handle on one ``squares-worker`` process, started on first use; calls from many threads may be in flight at
    once. A worker that dies or breaks the protocol is replaced, and the chunks it had in flight are sent again.

    :param command: a path, a command line (split like a shell would) or an argv sequence; default: the lookup of
        :mod:`my_module._locate` (``$MY_MODULE_WORKER`` first).
    :param timeout: default per-call timeout in seconds (None: no limit).
    :param max_frame_bytes: the largest frame sent or accepted (64 MiB; frames sent also keep under the worker's).
    :param env: the worker's whole environment (as in ``subprocess``); None: inherit ours.
    :param startup_timeout: seconds a new worker has to answer ``initialize`` (10; None: no limit).
    :param shutdown_timeout: seconds :meth:`close` waits after ``shutdown``, then after SIGTERM, before SIGKILL (2).
    :param retries: times a call whose worker crashed is sent again to a fresh one (1).
    :param chunk_size: largest number of elements per request (None: 32768, and 2,097,152 for shm).
    :param encodings: encodings this client may use, preferred first (``("shm", "packed", "json")``; each only if
        the worker lists it; shm for chunks of 8192+ numbers).
    :raises WorkerNotFoundError: no worker executable was found.
    :raises TypeError, ValueError: an option of the wrong type, or out of its range (the message names it).
    """

    def __init__(self, command: Optional[Command] = None, *, timeout: Optional[float] = None,
                 max_frame_bytes: Optional[int] = None, env: Optional[Mapping[str, str]] = None,
                 startup_timeout: Optional[float] = 10.0, shutdown_timeout: float = 2.0, retries: int = 1,
                 chunk_size: Optional[int] = None,
                 encodings: Tuple[str, ...] = (ENCODING_SHM, ENCODING_PACKED, ENCODING_JSON)) -> None:
        frame = Options.max_frame_bytes if max_frame_bytes is None else max_frame_bytes
        self.options = Options(timeout=timeout, max_frame_bytes=frame, startup_timeout=startup_timeout, retries=retries,
                               shutdown_timeout=shutdown_timeout, chunk_size=chunk_size, encodings=encodings)
        self.command: Tuple[str, ...] = find_worker(command)
        self._session = Session(self.command, env, self.options)
        self._finalizer = weakref.finalize(self, self._session.abandon)

    def __repr__(self) -> str:
        return f"<my_module.Worker {' '.join(self.command)!r} {'closed' if self.closed else f'pid={self.pid}'}>"

    def __reduce__(self) -> Any:
        # A Worker owns a process and its pipes, which no other process can use: refuse to be
        # pickled (dask, multiprocessing) with a message that says what to send instead.
        raise TypeError("a my_module.Worker cannot be pickled: it owns a local worker process. Send the numbers "
                        "and call my_module.calculate_squares (or create a Worker) in the receiving process")

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def calculate_squares(self, numbers: Iterable[Any], *, timeout: Optional[float] = None,
                          out: Optional[Out] = None) -> Union[List[int], Out]:
        """Return ``[n * n for n in numbers]``, computed by the worker, exactly; or write them into ``out``, returned.

        :param numbers: any iterable of ints in ``0 <= n <= 2**32 - 1`` (list, tuple, range, generator,
            ``array.array``, numpy integer array; ``bool`` is 0/1 as in PyO3).
        :param timeout: seconds (None: this Worker's ``timeout``; ``math.inf``: no limit).
        :param out: a writable C-contiguous buffer of ``len(numbers)`` unsigned 64-bit integers (numpy uint64,
            ``array('Q')``, a memoryview cast to ``'Q'``) that receives the squares with no Python int per element
            (TypeError or ValueError, before anything is sent, for any other). After an error, a timeout or an
            interrupt it may hold some squares.
        :raises TypeError: ``numbers`` is a str, bytes, mapping, None, a bool array or not iterable, or an
            element is not an integer (the message names its index).
        :raises OverflowError: an element is negative or above ``2**32 - 1`` (index named).
        :raises TimeoutError: not finished in time (the request is cancelled in the worker).
        :raises WorkerError: closed; or ``WorkerNotFoundError``, ``WorkerCrashedError`` (on every retry),
            ``ProtocolError`` (the worker broke the contract and is replaced).
        """
        return _requests.run(self._squares(numbers, timeout, out))  # type: ignore[no-any-return]

    def submit(self, numbers: Iterable[Any], *, timeout: Optional[float] = None,
               out: Optional[Out] = None) -> "concurrent.futures.Future[Union[List[int], Out]]":
        """Start ``calculate_squares(numbers)``, blocking only while the input is written; its Future raises what
        :meth:`calculate_squares` raises (the timeout holds even if nobody waits), ``cancel()`` cancels it in the
        worker, its callbacks run on the reader thread and must not block. An unusable ``numbers`` raises here."""
        return _requests.submit(self._squares(numbers, timeout, out), self._session.deadlines)

    async def calculate_squares_async(self, numbers: Iterable[Any], *, timeout: Optional[float] = None,
                                      out: Optional[Out] = None) -> Union[List[int], Out]:
        """``await``-able :meth:`calculate_squares`, not blocking the event loop (``numbers`` is read here, written
        by the loop's default executor). Cancelling the awaiting task cancels the request in the worker."""
        return await _requests.run_async(self._squares(numbers, timeout, out), self._session.deadlines)  # type: ignore[no-any-return]

    def _squares(self, numbers: Iterable[Any], timeout: Optional[float], out: Any) -> _requests.Call:
        numbers = _convert.as_numbers(numbers) if not self.closed else ()
        return self._session.call(CALCULATE_SQUARES, numbers, timeout, out=out)

    @property
    def info(self) -> Dict[str, Any]:
        """The worker's ``initialize`` result (protocol version, limits, ...); starts it as a call would."""
        return copy.deepcopy(self._session.connection(self._session.deadline(None)).info)

    @property
    def pid(self) -> Optional[int]:
        """The process id of the running worker, or None if none is running."""
        return self._session.pid

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._session.closed

    def close(self) -> None:
        """Stop the worker and reap it: ``shutdown`` (it finishes what is in flight), end of input, then SIGTERM and
        SIGKILL ``shutdown_timeout`` s apart. Idempotent; never raises; the Worker cannot be used again."""
        self._finalizer.detach()
        self._session.close()
