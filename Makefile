# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@# caldav -> niquests -> urllib3-future, whose startup hook overwrites urllib3 for every other library
	@# (requests, schemathesis). Its documented opt-out: build it with URLLIB3_NO_OVERRIDE=1, then put the
	@# real urllib3 back. Versions stay the ones pip resolved.
	URLLIB3_NO_OVERRIDE=1 $(BIN)/python -m pip install --quiet --force-reinstall --no-deps --no-binary urllib3-future \
		"urllib3-future==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("urllib3-future"))')"
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps \
		"urllib3==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("urllib3"))')"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/croco demo

test: install
	@# Two workers on the 2-core CI machine halve the run (13 to 7 minutes): tests wait on servers more than they compute.
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy storage sync croco web bot
	$(BIN)/lint-imports

bench: install
	$(BIN)/python bench/caldav_sync.py
	$(BIN)/python bench/availability.py
	$(BIN)/python -m bench.slack
	$(BIN)/python -m bench.google
	$(BIN)/python -m bench.microsoft
	$(BIN)/python -m bench.metrics

clean:
	rm -rf $(VENV) .croco .pytest_cache .mypy_cache .ruff_cache
