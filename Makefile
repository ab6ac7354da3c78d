# One entry point for everything; see README.md.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: venv test lint typecheck demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

## Runs the whole suite: lint, types, unit, integration (real redis-server) and browser tests.
test: $(STAMP)
	$(PY) -m ruff check moica_auth tests benchmarks example_site
	$(PY) -m mypy moica_auth
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check moica_auth tests benchmarks example_site

typecheck: $(STAMP)
	$(PY) -m mypy moica_auth

## Starts the demo portal at http://127.0.0.1:8000/ (SQLite, in-process stores).
demo: $(STAMP)
	$(PY) -m example_site.demo

bench: $(STAMP)
	$(PY) -m benchmarks.verify
	$(PY) -m benchmarks.revocation
	$(PY) -m benchmarks.chain_attack
	$(PY) -m benchmarks.login

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
