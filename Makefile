# `make run` — the service on the embedded default (SQLite + file keys in ./var, demo CA on first run)
# `make test` — lint, types, import contracts, then the whole test suite
VENV ?= .venv
BIN = $(VENV)/bin
export GOVPKI_HOME ?= $(CURDIR)/var

.PHONY: setup run test check pytest bench-smoke deploy-test clean

$(VENV)/.installed: setup.py pyproject.toml $(wildcard */__init__.py apps/*/__init__.py)
	@.ci/system-packages
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/govpki init --if-empty
	$(BIN)/govpki serve

check: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: setup
	$(BIN)/pytest

# nginx + two `govpki serve` nodes + PostgreSQL, from the files in deploy/ (docs/OPERATIONS.md)
deploy-test: setup
	$(BIN)/pytest tests/deploy -q

bench-smoke: setup
	$(BIN)/python bench/issuance.py --smoke > /dev/null
	$(BIN)/python bench/crl.py --smoke > /dev/null
	$(BIN)/python bench/ocsp.py --smoke > /dev/null
	$(BIN)/python bench/signing.py --smoke > /dev/null
	$(BIN)/python bench/kmc.py --smoke > /dev/null
	$(BIN)/python bench/ra.py --smoke > /dev/null
	$(BIN)/python bench/sso.py --smoke > /dev/null
	$(BIN)/python bench/exchange.py --smoke > /dev/null

test: check pytest bench-smoke

clean:
	rm -rf $(VENV) var *.egg-info
