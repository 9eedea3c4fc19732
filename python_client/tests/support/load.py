"""Load for the reliability tests: random inputs, calls in every style, outcomes tallied.

Every call ends in one :class:`Outcome`: ``ok`` (the result was compared with
``[x * x for x in numbers]``), ``cancelled`` (``future.cancel()`` won), the name of a
documented exception, or ``wrong``/``undocumented``/``hung`` (always a failure). Its duration
is kept with its timeout, so a test can check that nothing outlived its bound.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import random
import threading
import time
from array import array
from dataclasses import dataclass
from typing import Callable, Counter, Dict, Iterable, Iterator, List, Optional, Sequence, Set

import my_module

DOCUMENTED = (
    my_module.WorkerCrashedError,
    my_module.ProtocolError,
    my_module.WorkerNotFoundError,
    TimeoutError,
)
"""The exceptions a call may raise for a worker fault (README, "Errors"), most specific first."""

STYLES = ("sync", "submit", "cancel", "async")


def random_numbers(rng: random.Random, size: int) -> List[int]:
    """``size`` random u32 (the whole range, so squares go past 2**53)."""
    if size == 0:
        return []
    numbers = array("I", rng.getrandbits(32 * size).to_bytes(4 * size, "little"))
    assert len(numbers) == size, "array('I') is not 4 bytes on this platform"
    return numbers.tolist()


def log_uniform_size(rng: random.Random, low: int, high: int) -> int:
    """A size between ``low`` and ``high``, uniform in log scale (as many tiny as huge calls)."""
    return int(round(low * (high / low) ** rng.random()))


@dataclass
class Outcome:
    kind: str  # ok, cancelled, an exception class name, wrong, undocumented, hung
    style: str
    size: int
    seconds: float
    timeout: Optional[float]
    detail: str = ""


def call_once(
    worker: my_module.Worker,
    numbers: Sequence[int],
    style: str,
    timeout: Optional[float],
    rng: random.Random,
    hang_after: float = 30.0,
) -> Outcome:
    """Run one call in ``style`` and classify how it ended."""
    started = time.monotonic()
    kind, detail = "ok", ""
    future = None
    try:
        if style == "sync":
            result = worker.calculate_squares(numbers, timeout=timeout)
        elif style in ("submit", "cancel"):
            future = worker.submit(numbers, timeout=timeout)
            if style == "cancel":
                time.sleep(rng.choice((0.0, 0.0005, 0.002, 0.01, 0.05)))
                future.cancel()
            try:
                result = future.result(timeout=hang_after)
            except concurrent.futures.CancelledError:
                kind = "cancelled"
                result = None
            except concurrent.futures.TimeoutError:
                if not future.done():
                    kind, detail = "hung", f"Future not done after {hang_after} s"
                    result = None
                else:
                    raise
        elif style == "async":
            result = asyncio.run(asyncio.wait_for(
                worker.calculate_squares_async(numbers, timeout=timeout), hang_after))
        else:
            raise ValueError(style)
        if kind == "ok" and result != [x * x for x in numbers]:
            kind, detail = "wrong", f"{len(result)} results for {len(numbers)} numbers"
    except DOCUMENTED as exc:
        kind, detail = type(exc).__name__, str(exc)[:300]
        if style == "async" and time.monotonic() - started >= hang_after:
            kind, detail = "hung", f"coroutine not done after {hang_after} s"  # wait_for's (3.11+)
    except asyncio.TimeoutError:  # before 3.11, not the built-in TimeoutError
        kind, detail = "hung", f"coroutine not done after {hang_after} s"
    except concurrent.futures.CancelledError:
        kind, detail = "undocumented", "CancelledError without a cancel()"
    except Exception as exc:  # noqa: BLE001 -- reported, and fails the test
        kind, detail = "undocumented", repr(exc)[:300]
    finally:
        # The Future holds its exception, whose traceback holds this frame: drop the Future
        # so that no reference cycle keeps the input alive (the soak watches memory).
        future = None
    return Outcome(kind, style, len(numbers), time.monotonic() - started, timeout, detail)


class Tally:
    """Outcomes from many threads, aggregated as they come (a soak makes hundreds of
    thousands; keeping each would pin the memory it is meant to watch).

    ``allowed``: the kinds a call may end in; any other goes to :attr:`unexpected`, as does
    an outcome ``check`` refuses. ``slack``: seconds a call may end after its timeout (its
    own, else ``default_timeout``) before it goes to :attr:`late`.
    """

    KEEP = 20  # unexpected or late outcomes kept, for the failure message

    def __init__(
        self,
        allowed: Iterable[str],
        slack: float,
        default_timeout: Optional[float] = None,
        check: Optional[Callable[[Outcome], bool]] = None,
    ) -> None:
        self.allowed = frozenset(allowed)
        self.slack = slack
        self.default_timeout = default_timeout
        self.check = check
        self._lock = threading.Lock()
        self.calls = 0
        self.kinds: Counter[str] = collections.Counter()
        self.by_style: Dict[str, Counter[str]] = collections.defaultdict(collections.Counter)
        self.numbers_verified = 0
        self.slowest = 0.0
        self.unexpected: List[Outcome] = []
        self.unexpected_count = 0
        self.late: List[Outcome] = []
        self.late_count = 0
        self.timeouts_without_timeout = 0

    def add(self, o: Outcome) -> None:
        timeout = o.timeout if o.timeout is not None else self.default_timeout
        with self._lock:
            self.calls += 1
            self.kinds[o.kind] += 1
            self.by_style[o.style][o.kind] += 1
            self.slowest = max(self.slowest, o.seconds)
            if o.kind == "ok":
                self.numbers_verified += o.size
            if o.kind == "TimeoutError" and timeout is None:
                self.timeouts_without_timeout += 1
            if o.kind not in self.allowed or (self.check is not None and not self.check(o)):
                if len(self.unexpected) < self.KEEP:
                    self.unexpected.append(o)
                self.unexpected_count += 1
            if timeout is not None and o.seconds > timeout + self.slack:
                if len(self.late) < self.KEEP:
                    self.late.append(o)
                self.late_count += 1

    def summary(self) -> str:
        styles = {k: dict(v) for k, v in self.by_style.items()}
        return (f"{self.calls} calls: {dict(self.kinds)}; by style {styles}; "
                f"{self.numbers_verified:,} squares verified; slowest call {self.slowest:.2f} s")

    def assert_clean(self) -> None:
        """Every call ended in an allowed way, none past its timeout + slack."""
        assert self.unexpected == [], f"{self.unexpected_count} unexpected outcomes: {self.unexpected}"
        assert self.late == [], f"{self.late_count} calls outlived their timeout: {self.late}"
        assert self.timeouts_without_timeout == 0, "TimeoutError from a call without a timeout"


def run_threads(count: int, body: Callable[[int], None], join_timeout: float) -> None:
    """Run ``body(i)`` on ``count`` threads started together; fail if one does not end."""
    barrier = threading.Barrier(count)
    errors: List[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            body(i)
        except BaseException as exc:  # noqa: BLE001 -- re-raised below on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"load-{i}") for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + join_timeout
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads never finished: {stuck}"
    if errors:
        raise errors[0]



class _SpawnCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.pids: Set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("started worker pid"):
            self.pids.add(int(record.args[0]))  # type: ignore[index]


@contextlib.contextmanager
def count_spawns() -> Iterator[Set[int]]:
    """The pids of the worker processes my_module starts inside the ``with`` (from its log)."""
    logger = logging.getLogger("my_module._connection")
    handler = _SpawnCounter()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler.pids
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
