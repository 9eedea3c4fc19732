# The two commands of README: `make demo` and `make test`. Each does its own set-up. While editing,
# `make check` (CONTRIBUTING.md) is the quick loop. Every pytest run says why a test was skipped (-rs).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
WORKER := .build/release/squares-worker

.PHONY: demo test check worker venv typecheck test-swift test-protocol test-python test-wheel bench bench-e2e bench-e2e-quick clean test-long \
	fuzz tsan asan venv-dask bench-dask bench-dask-quick test-hosts bench-hosts

## Build the worker (release) and run the demo.
demo: worker venv
	$(VPY) python_client/examples/demo.py

## Build everything and run every test: Swift, protocol conformance, Python, the wheel and the
## sdist, dask on separate hosts (as root), and smoke runs of the end-to-end and dask benchmarks;
## then a minute of fuzzing and the Swift tests under TSan and ASan.
test: worker venv typecheck test-swift test-protocol test-python test-wheel test-hosts bench-e2e-quick bench-dask-quick \
	fuzz tsan asan

## The quick loop while editing (CONTRIBUTING.md; under 3 minutes once the worker is built): the
## client's unit tests, the Swift tests (debug build) and the conformance suite against the release worker.
check: worker venv
	$(VPY) -m pytest -q -rs python_client/tests/unit
	swift build --build-tests
	swift test --skip-build
	$(VPY) protocol/conformance.py --no-skip -- $(WORKER)

# The wheel's build too (python_client/hatch_build.py), so that make and pip share one build in
# .build/: release, the Swift standard library linked in (the binary needs no toolchain to run).
worker:
	swift build -c release --static-swift-stdlib --product squares-worker

# A virtual environment with the client (editable, so it finds this checkout's worker) and the
# test tools (jsonschema: the protocol tests' cross-check of the runner's own validator;
# auditwheel and build: the wheel test). The stamp makes it once per change of
# pyproject.toml.
venv: $(VENV)/.stamp
$(VENV)/.stamp: python_client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet "pytest>=7" "hypothesis>=6" "jsonschema>=4.18" "auditwheel>=6" "build>=1" "mypy>=1.8" -e ./python_client
	touch $@

# dask.distributed (a real LocalCluster) and numpy (dask.array) for python_client/tests/integration/test_dask.py:
# test tools like pytest, never dependencies of the package. A stamp of their own, so that the
# venv target's list stays the package's, and a remade venv gets them again.
venv-dask: $(VENV)/.stamp-dask
$(VENV)/.stamp-dask: $(VENV)/.stamp
	$(VPY) -m pip install --quiet "dask[distributed]>=2024.1" "numpy>=1.24"
	touch $@

## The client's types, strictly (it ships py.typed).
typecheck: venv
	$(VPY) -m mypy --strict python_client/src/my_module

test-swift:
	swift build --build-tests
	swift test --skip-build

## --no-skip: the Swift worker serves every encoding here (shm included), so a skipped case is a failure.
test-protocol: worker venv
	$(VPY) -m pytest -q -rs protocol/tests
	$(VPY) protocol/conformance.py --no-skip -- $(WORKER)

test-python: worker venv venv-dask
	$(VPY) -m pytest -q -rs python_client/tests

## The wheel and the sdist as a user gets them (python_client/packaging_tests): built by pip, the
## wheel installed into a fresh venv per Python, called from outside the checkout, uninstalled.
test-wheel: worker venv
	$(VPY) -m pytest -q -rs python_client/packaging_tests

## my_module as deployed on a cluster (docs/scaling-out.md, On separate hosts): dask's own scheduler
## and workers on separate hosts (network namespaces of this machine joined by a bridge), the wheel
## built by pip and installed from the package index into a venv per host. Needs root and `ip netns`
## (skipped otherwise, saying why); ~2-3 min, 20 min at most (the test's own time budget).
## HOSTS_LOG_DIR=DIR keeps the dask processes' logs.
test-hosts: worker venv
	$(VPY) -m pytest -q -s -rs python_client/hosts_tests

## The same dask job on 1 and 2 worker hosts beside a LocalCluster (docs/scaling-out.md; as root;
## ~6 min; BENCH_ARGS="--json FILE").
bench-hosts: worker venv
	$(VPY) python_client/hosts_tests/bench_hosts.py $(BENCH_ARGS)

## The long versions of the client's reliability tests (docs/reliability.md): a
## 50,000,000-number call (~5 GB of RAM), a SOAK_SECONDS soak (default 600) and FAULT_SECONDS of
## SIGKILLs under load (default 120).
SOAK_SECONDS ?= 600
FAULT_SECONDS ?= 120
test-long: worker venv
	MY_MODULE_LONG=1 SOAK_SECONDS=$(SOAK_SECONDS) FAULT_SECONDS=$(FAULT_SECONDS) $(VPY) -m pytest -q -s -rs \
		python_client/tests/integration/test_limits.py python_client/tests/long/test_soak.py \
		python_client/tests/faults/test_reliability.py::test_sigkill_at_random_moments_under_load_from_16_threads

## Release benchmark of the codec and the core against Foundation's Codable.
bench:
	swift run -c release squares-bench

## End-to-end benchmark of the Python client against its baselines (~3 min; BENCH_ARGS="--json FILE"),
## the seed's PyO3 module among them (its first build: ~2 min more), and out= on numpy arrays
## against numpy (rows left out, with a note, where numpy is not installed: make venv-dask).
bench-e2e: worker venv pyo3-seed
	$(VPY) python_client/benchmarks/bench_e2e.py $(BENCH_ARGS)

# The seed's PyO3 module, built offline by cargo against Debian's PyO3 0.17 sources, which this
# installs (librust-pyo3-dev) when cargo is here and it runs as root; without cargo, a note, and
# the benchmark leaves the PyO3 rows out. The first build takes ~1-2 min.
.PHONY: pyo3-seed
pyo3-seed: venv
	$(VPY) python_client/benchmarks/pyo3_seed/build.py --install-deps

## Scaling out (docs/scaling-out.md): one job (20,000,000 numbers in 40 partitions) on a dask LocalCluster
## of 1 and 2 processes x 1, 2, 4 threads, my_module against pure Python, and a dask.array of as many
## uint32 in 40 blocks (numpy in the tasks, my_module with out=, the list path); writes
## python_client/benchmarks/bench_dask.png (~6 min; BENCH_ARGS="--json FILE"). Its own venv, so
## that matplotlib never meets the test venv; the client comes from the source tree.
BENCH_VENV := .venv-bench
bench-dask: worker $(BENCH_VENV)/.stamp
	PYTHONPATH=$(CURDIR)/python_client/src $(BENCH_VENV)/bin/python python_client/benchmarks/bench_dask.py $(BENCH_ARGS)
$(BENCH_VENV)/.stamp: python_client/benchmarks/requirements-dask.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r python_client/benchmarks/requirements-dask.txt
	touch $@

# Smoke run of it in the test venv (~40 s; no plot, so no matplotlib): it runs, nothing about speed.
bench-dask-quick: worker venv-dask
	$(VPY) python_client/benchmarks/bench_dask.py --quick

# Smoke run of the same (~10 s): checks that it runs, asserts nothing about speed.
bench-e2e-quick: worker venv
	$(VPY) python_client/benchmarks/bench_e2e.py --quick

## Fuzz the worker's input path (frame decoder, JSON reader, codecs) with libFuzzer and ASan for
## FUZZ_SECONDS (default 60), from seeds made of the conformance vectors. Long run:
## `make fuzz FUZZ_SECONDS=3600 FUZZ_ARGS=-fork=2`; the corpus in .build-fuzz/corpus grows across
## runs, and a crash is saved in .build-fuzz/artifacts/ (replay: $(FUZZER) <file>).
# Leak checks are off: LeakSanitizer after every input costs 10x and finds the runtime's caches.
FUZZ_DIR := $(CURDIR)/.build-fuzz
FUZZER := $(FUZZ_DIR)/release/squares-fuzz
FUZZ_SECONDS ?= 60
# One -sanitize=fuzzer,address: swiftc keeps only the last -sanitize= flag, and SwiftPM writes
# `--sanitize fuzzer --sanitize address` in no fixed order, so either could silently go missing.
# (`--sanitize fuzzer` stays so that SwiftPM leaves `main` to libFuzzer.) `-enable-testing`: the
# fuzzer reaches the worker's internals with `@testable import`, as the tests do, so that no
# production type carries a test-only entry point.
fuzz:
	swift build --package-path Tests/Fuzz --scratch-path $(FUZZ_DIR) -c release --sanitize fuzzer -Xswiftc -enable-testing \
		-Xswiftc -sanitize=fuzzer,address --product squares-fuzz
	$(PYTHON) Tests/Fuzz/make_corpus.py $(FUZZ_DIR)/corpus
	mkdir -p $(FUZZ_DIR)/artifacts
	SWIFT_BACKTRACE=enable=no $(FUZZER) -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
		-detect_leaks=0 -dict=Tests/Fuzz/squares.dict -artifact_prefix=$(FUZZ_DIR)/artifacts/ \
		-print_final_stats=1 $(FUZZ_ARGS) $(FUZZ_DIR)/corpus

# The Swift tests under each sanitizer, each in a build folder of its own. Serially: under a
# sanitizer's slowdown, tests running side by side on 2 cores miss their own deadlines.
## The Swift tests under ThreadSanitizer (Tests/Sanitizers/tsan.supp says what is suppressed).
tsan:
	swift build --build-tests --scratch-path $(CURDIR)/.build-tsan --sanitize thread
	TSAN_OPTIONS="suppressions=$(CURDIR)/Tests/Sanitizers/tsan.supp" \
		swift test --skip-build --scratch-path $(CURDIR)/.build-tsan --sanitize thread --no-parallel

## The Swift tests under AddressSanitizer, with leak checks at exit (Tests/Sanitizers/lsan.supp).
asan:
	swift build --build-tests --scratch-path $(CURDIR)/.build-asan --sanitize address
	LSAN_OPTIONS="suppressions=$(CURDIR)/Tests/Sanitizers/lsan.supp" \
		swift test --skip-build --scratch-path $(CURDIR)/.build-asan --sanitize address --no-parallel

clean:
	rm -rf .build .build-fuzz .build-tsan .build-asan $(VENV) $(BENCH_VENV)
