# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PROTO   = protos/workerstate/v1/workerstate.proto
STAMP   = $(VENV)/.installed
NODE    = tests/polyglot/node_modules/.package-lock.json
BUF     = tests/polyglot/node_modules/.bin/buf

.PHONY: run test lint typecheck proto clean bench bench-quick bench-peers bench-watch bench-postgres bench-board \
        bench-bulk bench-selectors bench-lifecycle bench-fleet bench-smoke soak

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("workerstate needs Python 3.11+, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools tells every editable install to mind folders named like the package (a
	@# UserWarning for information only); tests/test_packaging.py checks the real build has none.
	PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# The Node.js client test and the buf CLI: pinned in tests/polyglot/package-lock.json.
$(NODE): tests/polyglot/package.json tests/polyglot/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  echo "error: the polyglot tests need Node.js 18+ and npm: apt-get install nodejs npm"; \
	  exit 1; }
	npm ci --prefix tests/polyglot --no-audit --no-fund --loglevel=error
	@touch $@

## run: start the daemon on ./workerstate.db at 127.0.0.1:50051, the board at http://127.0.0.1:8080
run: $(STAMP)
	$(VENV)/bin/workerstate serve --board-listen 127.0.0.1:8080

## test: the whole suite (includes ruff, mypy and the generated-code freshness check)
test: $(STAMP) $(NODE)
	$(PY) -m pytest -q

## lint: ruff, buf lint, and buf breaking against the proto on the main branch
lint: $(STAMP) $(NODE)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(BUF) lint protos
	@if git rev-parse --verify --quiet main >/dev/null; then \
	  echo "$(BUF) breaking protos --against '.git#branch=main,subdir=protos'"; \
	  $(BUF) breaking protos --against '.git#branch=main,subdir=protos'; \
	else echo "buf breaking: no main branch to compare with"; fi

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## proto: regenerate the committed bindings in protos/workerstate/v1/
proto: $(STAMP)
	$(PY) protos/generate.py

## bench: every workload (W1-W8, selectors, lifecycle), every system (floor, workerstate, direct SQLite, PostgreSQL, etcd); run it on a quiet machine
bench: $(STAMP)
	$(PY) bench/run.py

## bench-quick: W1 at N=64 and W3 for every system, in about a minute
bench-quick: $(STAMP)
	$(PY) bench/run.py --quick

## bench-peers: install etcd (the peer system) and its protos from Debian
bench-peers:
	apt-get install -y etcd-server golang-etcd-server-dev

## bench-watch: W5 watch fan-out, 100 watchers at 200 transitions/s and 1,000 at 5/s
bench-watch: $(STAMP)
	$(PY) bench/watch_fanout.py --watchers 100 --rate 200 --seconds 10
	$(PY) bench/watch_fanout.py --watchers 1000 --rate 5 --seconds 10

## bench-postgres: W1, W5, cross-daemon delivery and the commit lock on PostgreSQL (1 and 2 daemons) beside SQLite; < 4 min
bench-postgres: $(STAMP)
	$(PY) bench/postgres.py

## bench-bulk: W7, 1,000 transitions as one Apply vs unary at 64 in flight, SQLite and PostgreSQL, vs etcd's W1 at 64
bench-bulk: $(STAMP)
	$(PY) bench/bulk.py

## bench-selectors: ListWorkers by selector vs by state at 100k workers; W5 with a selector vs a states filter
bench-selectors: $(STAMP)
	$(PY) bench/listing.py

## bench-lifecycle: the live view with FINISHED finished workers stored (default 1M); a mass expiry of 100k under W1
FINISHED ?= 1000000
bench-lifecycle: $(STAMP)
	$(PY) bench/lifecycle.py --finished $(FINISHED)

## bench-fleet: W8, 10,000 workers beating every 2 s over multiplexed streams, on SQLite
bench-fleet: $(STAMP)
	$(PY) bench/fleet.py

## bench-smoke: each of the four above at toy size, one after another (checks the wiring, not the figures)
bench-smoke: $(STAMP)
	$(PY) bench/bulk.py --quick
	$(PY) bench/listing.py --quick
	$(PY) bench/lifecycle.py --quick
	$(PY) bench/fleet.py --quick

## bench-board: the board's delivery latency and CPU (1,000 workers, 200 changes/s, 10 pages)
bench-board: $(STAMP)
	$(PY) bench/board.py

## soak: mixed load with restarts for SOAK_MINUTES (default 10); nothing lost or doubled
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) build *.egg-info
