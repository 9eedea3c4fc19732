"""my_module: exact squares of u32 numbers, computed by a long-running Swift worker process.

A pure-Python drop-in for a PyO3 module with ``calculate_squares(numbers: Vec<u32>) -> Vec<u64>``:
the work runs outside the GIL, in parallel, in ``squares-worker``, which this package starts on
first use and talks to over its stdin/stdout (length-prefixed JSON-RPC 2.0).

>>> import my_module
>>> my_module.calculate_squares([1, 2, 3])
[1, 4, 9]
"""

from ._default import calculate_squares, calculate_squares_async, default_worker
from ._errors import ProtocolError, WorkerCrashedError, WorkerError, WorkerNotFoundError
from ._worker import Worker

__version__ = "0.1.0"

__all__ = ["ProtocolError", "Worker", "WorkerCrashedError", "WorkerError", "WorkerNotFoundError",
           "calculate_squares", "calculate_squares_async", "default_worker"]
