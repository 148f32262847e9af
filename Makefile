# Every entry point people need. `make serve` and `make test` set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
FUZZ_EXAMPLES ?= 2000
SOAK_MINUTES ?= 10
ORACLE_CASES ?= 2000

.PHONY: venv serve test test-postgres browser-test fuzz lint fmt docs generate check bench interop oracle soak crash hostile clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

serve: venv
	$(BIN)/antechamber serve

test: venv
	$(BIN)/pytest -q --cov=matrix --cov-branch --cov-report=term-missing:skip-covered --cov-fail-under=100

# The same suite on PostgreSQL: a throwaway cluster (Debian's postgresql package: initdb, run as
# the postgres user when root), one database per test, removed at exit.
test-postgres: venv
	ANTECHAMBER_TEST_DATABASE=postgresql $(BIN)/pytest -q -p no:cacheprovider

browser-test: venv
	ANTECHAMBER_REQUIRE_BROWSER=1 $(BIN)/pytest -q -p no:cacheprovider -m browser tests/test_admin_browser.py

fuzz: venv
	ANTECHAMBER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ANTECHAMBER_FUZZ_REPORT=$${ANTECHAMBER_FUZZ_REPORT:-fuzz-report.json} $(BIN)/pytest -q -p no:cacheprovider tests/test_fuzz.py tests/test_fuzz_admin.py

lint: venv
	$(BIN)/ruff format --check . && $(BIN)/ruff check . && $(BIN)/mypy && $(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

docs: venv
	$(BIN)/python -m app.docs site

generate: venv
	$(BIN)/python -m scripts.generate_types

check: lint test

bench: venv
	@# wrk, the load generator: Debian's package, installed when missing (as root, or with sudo).
	@command -v wrk >/dev/null || { S=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$S apt-get update -q && $$S apt-get install -y -q wrk; }
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,bench]' && $(BIN)/python -m bench.run && $(BIN)/python -m bench.state_res && $(BIN)/python -m bench.send_join && $(BIN)/python -m bench.transactions

soak: venv
	$(BIN)/python scripts/soak.py --minutes $(SOAK_MINUTES)

crash: venv
	$(BIN)/python scripts/crash_test.py

hostile: venv
	$(BIN)/python scripts/hostile_peers.py

interop: venv
	bash interop/run.sh

oracle: venv
	ORACLE_CASES=$(ORACLE_CASES) bash oracle/run.sh

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache .coverage
