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

# The official socket.io-client for tests/test_js_client.py and the browser test's CDN stand-in.
JS_DEPS := tests/js/node_modules/.npm-ci-stamp
$(JS_DEPS): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund
	touch $@

run: $(VENV)/.run-deps
	@echo "chatapp: starting on http://localhost:$(PORT)  (embedded store unless MONGO_DB_URL is set)"
	PORT=$(PORT) $(PY) wsgi.py

test: $(VENV)/.dev-deps $(JS_DEPS)
	$(PY) -m pytest $(PYTEST_OPTS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
