# The two commands of README: `make demo` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
WORKER := .build/release/squares-worker

.PHONY: demo test worker venv test-swift test-protocol test-python bench clean

## Build the worker (release) and run the demo.
demo: worker venv
	$(VPY) python_client/examples/demo.py

## Build everything and run every test: Swift, protocol conformance, Python.
test: worker venv test-swift test-protocol test-python

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

## Release benchmark of the codec and the core against Foundation's Codable.
bench:
	swift run -c release squares-bench

clean:
	rm -rf .build $(VENV)
