# The two commands of the README: `make run` (the main job) and `make test` (install everything, run all checks).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Parallel test workers: the machines have 2 cores.
JOBS   ?= auto

.PHONY: run test setup browser peers lint typecheck unit clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# Headless Chromium for the browser tests, from Debian's packages (skipped when already there).
browser:
	@bash scripts/ensure-chromium.sh

# Foreign MoQ implementations for the interop tests (aiomoqt, in its own Python 3.12 venv under .peers/).
peers: setup
	$(BIN)/python -m interop.peers install

# A relay with a demo broadcast; it prints the URL to watch it in a browser. Ctrl-C stops it.
run: setup
	$(BIN)/moq demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# Every test: first all but the Chromium ones, spread over the cores; then the Chromium ones alone, one after
# another (pages that share two cores with anything else fall seconds behind; tests/conftest.py).
TEST_ENV := MOQ_REQUIRE_BROWSER=1 MOQ_REQUIRE_PEERS=1 MOQ_INTEROP_TIMEOUT_SCALE=3
unit: setup
	$(TEST_ENV) $(BIN)/pytest -n $(JOBS) -q -m "not browser"
	$(TEST_ENV) $(BIN)/pytest -q -m browser

test: setup browser peers lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
