# Two commands do all the set-up on a fresh machine (Python 3.11+):
#   make demo   - venv, two embedded PostgreSQL servers with drifted sample data, `websync sync` twice
#   make test   - venv, OpenSSH server if missing (Debian), the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# the suite's own temp root: the embedded servers (another user) read their data there, and a pytest run
# elsewhere on the machine re-tightens the shared /tmp/pytest-of-<user> to 0700
PYTEST_TMP = --basetemp=$${TMPDIR:-/tmp}/websync-tests
# two workers, a test file each at a time: most of the suite waits on servers, locks and child processes, so two
# files at once on two cores take about half the time (each worker starts its own servers and sshd)
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: install demo demo-ssh demo-ui test test-fast lint bench bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c 'from websync_dagster.defs.instance import prepare_dagster_home; prepare_dagster_home()'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m websync_dagster.demo

demo-ssh: $(STAMP)
	bash .ci/install-sshd.sh
	$(BIN)/python -m websync_dagster.demo --ssh

# the UI (dg dev) on the demo's servers, runs and settings (the SSH ones after demo-ssh): make demo-ui PORT=3001
PORT ?= 3000
demo-ui: $(STAMP)
	$(BIN)/python -m websync_dagster.demo --ui --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: $(STAMP) lint
	bash .ci/install-sshd.sh
	bash .ci/install-postgres.sh
	WEBSYNC_REQUIRE_SSHD=$${WEBSYNC_REQUIRE_SSHD:-1} $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_TMP) $(PYTEST_WORKERS)

# the fast layer alone: no server, no subprocess (seconds)
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not servers"

# websync against the raw COPY pipe and the runbook: the VPS link at x0.25, loopback at x1 (medians of 3), then once
# at x2 and x10 (4.6 GB of CSV): about 40 min on 2 cores; make bench BENCH_ARGS="--growth 2" for the short one
BENCH_ARGS ?= --growth 2 10
bench: $(STAMP)
	bash .ci/install-sshd.sh
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Sling and dlt side by side with websync (benchmarks/peers.py, docs/BENCHMARKS.md "Peers"), the peers in their own
# venv, never in websync's (psycopg: SQLAlchemy 2.1 reaches postgresql:// URLs through it): make bench-peers
# PEERS_ARGS="--scale 1 --json peers.json" (default x0.5: 16 min on 2 cores shared with a test suite; x1 ~25-30)
PEERS_VENV := benchmarks/.peers-venv
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_ARGS ?=

$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet 'sling-linux-amd64==1.4.11' 'dlt[postgres,sql_database]==1.31.0' 'reladiff==0.6.0' 'psycopg[binary]'
	touch $(PEERS_STAMP)

bench-peers: $(STAMP) $(PEERS_STAMP)
	bash .ci/install-sshd.sh
	$(BIN)/python benchmarks/peers.py $(PEERS_ARGS)

clean:
	rm -rf .demo exports .dagster_home
