# The two commands of README: `make demo` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
WORKER := .build/release/squares-worker

.PHONY: demo test worker venv test-swift test-protocol test-python bench bench-e2e bench-e2e-quick clean test-long

## Build the worker (release) and run the demo.
demo: worker venv
	$(VPY) python_client/examples/demo.py

## Build everything and run every test: Swift, protocol conformance, Python, and a smoke run
## of the end-to-end benchmark.
test: worker venv test-swift test-protocol test-python bench-e2e-quick

worker:
	swift build -c release --product squares-worker

# A virtual environment with the client (editable, so it finds this checkout's worker) and the
# test tools. The stamp makes it once per change of pyproject.toml.
venv: $(VENV)/.stamp
$(VENV)/.stamp: python_client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet "pytest>=7" "hypothesis>=6" -e ./python_client
	touch $@

test-swift:
	swift build --build-tests
	swift test --skip-build

test-protocol: worker venv
	$(VPY) -m pytest -q protocol/tests
	$(VPY) protocol/conformance.py -- $(WORKER)

test-python: worker venv
	$(VPY) -m pytest -q python_client/tests

## The long versions of the client's reliability tests (python_client/README.md, Reliability): a
## 50,000,000-number call (~5 GB of RAM), a SOAK_SECONDS soak (default 600) and FAULT_SECONDS of
## SIGKILLs under load (default 120).
SOAK_SECONDS ?= 600
FAULT_SECONDS ?= 120
test-long: worker venv
	MY_MODULE_LONG=1 SOAK_SECONDS=$(SOAK_SECONDS) FAULT_SECONDS=$(FAULT_SECONDS) $(VPY) -m pytest -q -s -rs \
		python_client/tests/test_limits.py python_client/tests/test_soak.py \
		python_client/tests/test_reliability.py::test_sigkill_at_random_moments_under_load_from_16_threads

## Release benchmark of the codec and the core against Foundation's Codable.
bench:
	swift run -c release squares-bench

## End-to-end benchmark of the Python client against its baselines (~2 min; BENCH_ARGS="--json FILE").
bench-e2e: worker venv
	$(VPY) python_client/benchmarks/bench_e2e.py $(BENCH_ARGS)

# Smoke run of the same (~10 s): checks that it runs, asserts nothing about speed.
bench-e2e-quick: worker venv
	$(VPY) python_client/benchmarks/bench_e2e.py --quick

clean:
	rm -rf .build $(VENV)
