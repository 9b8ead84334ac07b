# chatapp: `make run` serves on http://localhost:$(PORT); `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
PYTEST_ARGS ?=
PYTEST_OPTS := tests -q -ra -o timeout=300 -W ignore::DeprecationWarning

.PHONY: run test test-mongo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The official socket.io-client for tests/test_js_client.py (and the AsyncAPI parser).
JS_DEPS := tests/js/node_modules/.npm-ci-stamp
$(JS_DEPS): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund
	touch $@

# The chat page's Socket.IO client: npm ci in chatapp/vendor (the official socket.io-client,
# pinned by its lock file) copies its browser build here, where the server serves it. Optional
# for `make run`: without npm the page works over REST, with live updates off.
PAGE_CLIENT := chatapp/static/vendor/socket.io.min.js
$(PAGE_CLIENT): chatapp/vendor/package.json chatapp/vendor/package-lock.json chatapp/vendor/copy-to-static.mjs
	cd chatapp/vendor && npm ci --no-audit --no-fund
	touch $@

# A real database process for the outage test, in a venv of its own (it needs pymongo >= 4.18).
NX_27017 := $(VENV)/nx-27017/bin/nx-27017
$(NX_27017): tests/requirements-nx-27017.txt | $(PY)
	$(PYTHON) -m venv $(VENV)/nx-27017
	$(VENV)/nx-27017/bin/python -m pip install --quiet -r tests/requirements-nx-27017.txt
	touch $@

# The load generator of `make bench` (and of its smoke test in `make test`).
BENCH_DEPS := bench/node_modules/.npm-ci-stamp
$(BENCH_DEPS): bench/package.json bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund
	touch $@

run: $(VENV)/.run-deps
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "chatapp: npm not found: the chat page runs without live updates (REST, polling)"; \
	elif ! $(MAKE) --no-print-directory $(PAGE_CLIENT); then \
	  echo "chatapp: npm ci failed in chatapp/vendor: the chat page runs without live updates"; \
	fi
	@echo "chatapp: starting on http://localhost:$(PORT)  (embedded store unless MONGO_DB_URL is set)"
	PORT=$(PORT) $(PY) wsgi.py

test: $(VENV)/.dev-deps $(JS_DEPS) $(PAGE_CLIENT) $(NX_27017) $(BENCH_DEPS)
	$(PY) -m pytest $(PYTEST_OPTS) $(PYTEST_ARGS)

# The same suite a second time against a database server, as the README's "Running against a
# real MongoDB" says: tests/mongo_wire.py (the embedded store behind the MongoDB wire protocol)
# on a free port, TEST_MONGO_URI pointing at it, stopped by its PID. Tests that cannot apply
# there skip with their reason (-ra lists them). .ci/run runs it after `make test`.
TEST_MONGO_DB ?= chatapp_wire_test
test-mongo: $(VENV)/.dev-deps $(JS_DEPS) $(PAGE_CLIENT)
	@set -u; dir=$$(mktemp -d); \
	$(PY) -m tests.mongo_wire --port 0 >"$$dir/wire.log" 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -rf "$$dir"' EXIT; \
	trap 'exit 130' INT TERM; \
	for _ in $$(seq 100); do grep -q serving "$$dir/wire.log" && break; \
	  kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
	port=$$(sed -n 's/^mongo_wire: serving .*:\([0-9][0-9]*\)$$/\1/p' "$$dir/wire.log"); \
	if [ -z "$$port" ]; then echo "mongo_wire did not start:"; cat "$$dir/wire.log"; exit 1; fi; \
	echo "test-mongo: TEST_MONGO_URI=mongodb://127.0.0.1:$$port/$(TEST_MONGO_DB) (mongo_wire, pid $$pid)"; \
	TEST_MONGO_URI="mongodb://127.0.0.1:$$port/$(TEST_MONGO_DB)" TEST_MONGO_DB_NAME=$(TEST_MONGO_DB) \
	  $(PY) -m pytest $(PYTEST_OPTS) $(PYTEST_ARGS)

# chatapp against its floor (bench/floor.py), side by side: bench/README.md. BENCH_ARGS=--smoke
BENCH_ARGS ?=
bench: $(VENV)/.dev-deps $(BENCH_DEPS)
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
