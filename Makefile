# chatapp: `make run` serves on http://localhost:$(PORT); `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
PYTEST_ARGS ?=
PYTEST_OPTS := tests -q -ra -o timeout=300 -W ignore::DeprecationWarning

.PHONY: run test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.run-deps
	@echo "chatapp: starting on http://localhost:$(PORT)  (embedded store unless MONGO_DB_URL is set)"
	PORT=$(PORT) $(PY) wsgi.py

test: $(VENV)/.dev-deps
	$(PY) -m pytest $(PYTEST_OPTS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
