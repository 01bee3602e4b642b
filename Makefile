# folio-stream — `make run` starts the demo server, `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8888

.PHONY: run test lint typecheck pytest client client-test e2e bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the package metadata changes.
$(VENV)/.stamp-run: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.stamp-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	$(BIN)/python server.py --host $(HOST) --port $(PORT)

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.stamp-test
	$(BIN)/mypy

# The browser tests drive Debian's chromium (never `playwright install`).
/usr/bin/chromium:
	@echo "installing Debian's chromium for the browser tests (tests/e2e)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# promtool checks the alert rules (tests/ops); Debian's prometheus package provides it.
/usr/bin/promtool:
	@echo "installing Debian's prometheus package for promtool (tests/ops)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null)

pytest: $(VENV)/.stamp-test /usr/bin/chromium /usr/bin/promtool
	$(BIN)/pytest

test: lint typecheck pytest

# The benchmark ladder (bench/README.md): folio-stream and two peers, ~21 min for the full ladder.
# A quick subset: make bench BENCH_ARGS="--points 1000,2000 --servers folio".
$(VENV)/.stamp-bench: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.stamp-test $(VENV)/.stamp-run

bench: $(VENV)/.stamp-bench
	ulimit -n 20000 2>/dev/null; $(BIN)/python bench/ladder.py $(BENCH_ARGS)

# The demo with its auto-trader for VERIFY_S seconds: server vs broker every 3 s, to the cent
# (exit 1 on any persistent mismatch). See docs/pnl.md.
.PHONY: verify-pnl
VERIFY_S ?= 600
verify-pnl: $(VENV)/.stamp-test
	$(BIN)/python bench/verify_pnl.py --duration $(VERIFY_S)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# --- the SPA (sources in client/, built files committed in static/) ---
client:
	cd client && npm ci --no-audit --no-fund && npm run build

# Vitest unit tests, type check, the first-load JS budget (150 kB gzipped), and "static/ is what the sources build".
client-test:
	cd client && npm ci --no-audit --no-fund && npm run typecheck && npm test && npm run build && npm run check-bundle
	git diff --exit-code -- static/ || (echo "static/ differs from what client/ builds: run 'make client' and commit" && exit 1)

# Browser end-to-end tests (Debian chromium driven by Playwright).
e2e: $(VENV)/.stamp-test /usr/bin/chromium
	$(BIN)/pytest tests/e2e

# --- the local cluster (docs/deployment.md): 1 simulator, 2 bridges (:9101, :9102) and
# `web --processes 2` on :8888, run by honcho from the Procfile. Settings: ops/cluster/cluster.env
# (PostgreSQL database folio_cluster, created if missing; REDIS_PREFIX folio-cluster).
.PHONY: cluster
CLUSTER_ENV ?= ops/cluster/cluster.env
$(VENV)/.stamp-dev: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.stamp-run

cluster: $(VENV)/.stamp-dev
	@PY=$(BIN)/python ops/cluster/check.sh $(CLUSTER_ENV)
	@PY=$(BIN)/python ops/cluster/seed.sh $(CLUSTER_ENV)
	$(BIN)/honcho -e $(CLUSTER_ENV) start
