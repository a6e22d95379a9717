# Two commands do all the set-up on a fresh machine (Python 3.11+):
#   make demo   - venv, two embedded PostgreSQL servers with drifted sample data, `websync sync` twice
#   make test   - venv, OpenSSH server if missing (Debian), the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo demo-ssh demo-ui test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m websync_dagster.demo

demo-ssh: $(STAMP)
	bash .ci/install-sshd.sh
	$(BIN)/python -m websync_dagster.demo --ssh

demo-ui: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m websync_dagster.demo --ui

test: $(STAMP)
	bash .ci/install-sshd.sh
	$(BIN)/ruff check .
	WEBSYNC_REQUIRE_SSHD=$${WEBSYNC_REQUIRE_SSHD:-1} $(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	bash .ci/install-sshd.sh
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf .demo exports .dagster_home
