# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

ITERATIONS ?= 2000
TASK       ?= circle_packing

.PHONY: run test lint test-deps docker-up docker-down bench bench-search venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/evoforge run $(TASK) --iterations $(ITERATIONS) --seed 0

# --- docker sandbox (issue 4) --- As root with no Docker engine answering, sandbox/ci_docker.sh
# installs docker.io + debootstrap, starts dockerd and builds evoforge-sandbox:latest (once); the trap
# stops only the dockerd it started. Where Docker cannot run, tests/sandbox/test_docker.py skips.
test: $(STAMP) test-deps lint
	started=$$(bash sandbox/ci_docker.sh start); trap '[ -z "$$started" ] || bash sandbox/ci_docker.sh stop $$started' EXIT; \
	$(BIN)/python -m pytest -q

# ruff over the repository, then mypy (strict) over the pure modules; settings in pyproject.toml. mypy runs
# in build/typecheck, links that lay the folders out as the installed `evoforge.*` package.
TYPECHECK := build/typecheck
lint: $(STAMP)
	$(BIN)/ruff check .
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/evoforge
	for d in engine evaluators prompts archive sandbox tasks; do ln -s ../../../$$d $(TYPECHECK)/evoforge/$$d; done
	ln -s ../../../evoforge/__init__.py $(TYPECHECK)/evoforge/__init__.py
	cd $(TYPECHECK) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml

# System packages some tests need, installed only when absent and when root (CI); otherwise those
# tests skip with a reason. chromium: tests/engine/test_report.py renders `evoforge report` headless.
# The process sandbox's isolation needs none (no bubblewrap, no libseccomp: README "Isolation").
test-deps:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "make: could not install chromium; the report rendering test will skip"

# Bring up (or take down) the Docker engine and image that `--sandbox docker` uses (as root).
docker-up:
	bash sandbox/ci_docker.sh start

docker-down:
	bash sandbox/ci_docker.sh stop

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Does the search earn its samples? Best score at N proposals per selection policy vs best-of-N (README, Search).
bench-search: $(STAMP)
	$(BIN)/python -m benchmarks.search

clean:
	rm -rf $(VENV) runs .pytest_cache
