# Every target works from a fresh clone: the virtual environment is made on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := test,lsl,edf,report,ezmsg

.PHONY: run test lint bench-core clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv installs the packages: about 20 s on a fresh clone, where pip took 80 s. The bytecode is compiled at
# install time (in parallel), as pip does: where PYTHONDONTWRITEBYTECODE is set, nothing compiled later is
# kept, and every process of the tests would compile its imports again. The venv's own pip installs uv,
# and stays for the packaging test, which builds the wheel as pip does.
UV := $(BIN)/uv
INSTALL := $(UV) pip install --quiet --compile-bytecode --python $(BIN)/python

$(UV): | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv>=0.13'

$(STAMP): pyproject.toml | $(UV)
	$(INSTALL) -e '.[$(EXTRAS)]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m lrr_service.service serve --host 127.0.0.1 --port 8000 --state-dir ./lrr-state

# Two workers per core; a test module stays on one worker, so its shared server starts once. About half of
# the suite's time is spent waiting on processes it started (servers starting, failovers, real-time
# replays), and a second worker per core fills those waits. On 2 cores the suite took 170 s with 2
# workers, 152 s with 3, 150 s with 4 and 174 s with 6.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(2 * (os.cpu_count() or 1))')

test: $(STAMP) test-tools
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Programs the tests run, each from the Debian package of the same name: HAProxy and Redis for the
# cluster tests (docs/scale.md), Chromium for the browser test of /docs (tests/test_docs_offline.py,
# driven by Playwright, which never downloads a browser of its own). As root they are installed here.
TEST_TOOLS := haproxy redis-server chromium

.PHONY: test-tools
test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do \
	  PATH="$$PATH:/usr/sbin:/usr/local/sbin" command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt)"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else \
	    echo "make test needs$$missing (cluster and browser tests): install them (Debian/Ubuntu: sudo apt install$$missing)"; \
	    exit 1; \
	  fi; \
	fi

LINT_STAMP := $(VENV)/.installed-lint

$(LINT_STAMP): $(STAMP)
	$(INSTALL) -e '.[$(EXTRAS),lint]'
	touch $(LINT_STAMP)

# ruff (format and rules) on every Python file; mypy (strict) on the three packages. mypy cannot follow
# setuptools' editable import hook, so it reads them through .lint/lrr_service, links to the folders.
lint: $(LINT_STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	mkdir -p .lint/lrr_service && for package in core service clients; do ln -sfn ../../$$package .lint/lrr_service/$$package; done
	cd .lint && ../$(BIN)/mypy --config-file ../pyproject.toml -p lrr_service

bench-core: $(STAMP)
	$(BIN)/python bench/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info .lint .mypy_cache .ruff_cache

.PHONY: container-test bench
container-test: $(STAMP)
	bash scripts/container-test.sh

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(INSTALL) -e '.[$(EXTRAS),bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/bench_service.py
	$(BIN)/python bench/bench_cluster.py

# The live view's screenshots in the README (docs/ui-*.png), taken again by its browser test.
.PHONY: screenshots
screenshots: $(STAMP) test-tools
	LRR_SCREENSHOTS_DIR=docs $(BIN)/python -m pytest -q tests/test_ui_browser.py

.PHONY: bench-cluster
bench-cluster: $(BENCH_STAMP)
	$(BIN)/python bench/bench_cluster.py

.PHONY: bench-rest
bench-rest: $(BENCH_STAMP)
	$(BIN)/python bench/rest_load.py
