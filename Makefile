# Every target works from a fresh clone: the virtual environment is made on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := test,lsl,edf

.PHONY: run test bench-core clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m lrr_service.service serve --host 127.0.0.1 --port 8000 --state-dir ./lrr-state

# One worker per core; a test module stays on one worker, so its shared server starts once.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

bench-core: $(STAMP)
	$(BIN)/python bench/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info

.PHONY: container-test bench
container-test: $(STAMP)
	bash scripts/container-test.sh

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS),bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/bench_service.py

.PHONY: bench-rest
bench-rest: $(BENCH_STAMP)
	$(BIN)/python bench/rest_load.py
