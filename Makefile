# The two commands a new user needs: `make demo` and `make test`. Everything else is a convenience.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test test-fast lint bench bench-gateway screenshots serve-fakes clean

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bigquery,otel]'
	@touch $@

install: $(BIN)/.installed   ## create .venv and install tallybook with its test dependencies

demo: install                ## start the fake providers, sync 90 days through the real pipeline, print a summary
	$(BIN)/tallybook demo

test: install lint           ## install, lint, start PostgreSQL if needed, run every test
	@bash scripts/ensure-postgres.sh || echo "!! PostgreSQL unavailable: the PostgreSQL tests will be skipped"
	@bash scripts/ensure-chromium.sh || echo "!! chromium unavailable: the browser tests will be skipped"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install           ## the tests without the slow end-to-end ones
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install                ## ruff over src, tests and bench; mypy over src (both pinned in the dev extra)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/tallybook

bench: install               ## ingest and sync throughput (prints figures)
	@bash scripts/ensure-postgres.sh || true
	$(BIN)/python bench/sync_bench.py

bench-gateway: install       ## gateway overhead: direct vs tallybook vs nginx vs LiteLLM at 20/100/500 req/s and flat out
	$(BIN)/python bench/gateway_bench.py

screenshots: install         ## refresh docs/img/ from the browser tests (each page, desktop and phone)
	@bash scripts/ensure-chromium.sh
	TALLYBOOK_SCREENSHOT_DIR=docs/img $(BIN)/python -m pytest -q tests/web/browser

serve-fakes: install         ## keep the fake OpenAI/Anthropic admin APIs running on :8901/:8902
	$(BIN)/tallybook fakes serve

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
