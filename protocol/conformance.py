#!/usr/bin/env python3
"""The conformance runner's command: ``python3 protocol/conformance.py [...] -- WORKER...`` runs
the package beside this file (protocol/conformance/, standard library only); ``--help`` lists the
options."""

import sys
from pathlib import Path

# The package, not this file: a directory package is found before a module of the same name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conformance.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
