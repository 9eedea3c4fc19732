"""The conformance runner, standard library only: drives any squares worker through the vectors.

    python3 protocol/conformance.py [--filter REGEX] [--vectors DIR] [--timeout SEC] [--no-skip] -- WORKER...

(or ``python3 -m conformance ...`` with protocol/ on ``sys.path``). Each case runs against a fresh
worker process: the runner writes the case's frames to the worker's stdin, reads its stdout
frames on a thread, and when the worker has exited (or the case's time is up: then it is killed
and the case fails) it checks every reply frame against the JSON Schemas in schemas/, the replies
against the case's expectations, and the exit status. Cases needing an encoding the worker's
initialize does not list (the shm cases: "shm") are skipped, counted and with the reason, unless
``--no-skip``. The last line printed is ``N passed, N failed`` (``, N skipped`` when some were);
the exit status is 1 if any case failed. The vector format and the matcher language are
described in protocol/README.md.

Modules, each importing only those above it: ``jsonexact`` (exact JSON), ``schema`` (the JSON
Schema subset), ``macros``, ``shm`` (segments), ``vectors`` (loading cases), ``match`` (checking
replies), ``driver`` (running a case), ``__main__`` (the command line).
"""

from .driver import FrameReader, Outcome, decode_frames, kill_group, run_case, skip_reasons
from .jsonexact import dumps, first_difference, json_equal, loads, short
from .macros import VectorError, expand_macros
from .match import check_shm_initialize, match
from .schema import SchemaError, Validator, method_schema
from .shm import SEGMENT_FILL, SHM_INITIALIZE_ID, ShmContext, parse_segments
from .vectors import Case, framed, load_cases, parse_step

__all__ = [
    "Case", "FrameReader", "Outcome", "SEGMENT_FILL", "SHM_INITIALIZE_ID", "SchemaError", "ShmContext", "Validator",
    "VectorError", "check_shm_initialize", "decode_frames", "dumps", "expand_macros", "first_difference", "framed", "json_equal",
    "kill_group", "load_cases", "loads", "match", "method_schema", "parse_segments", "parse_step", "run_case", "short", "skip_reasons",
]
