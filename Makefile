# Tidemark: `make demo` runs the backfill on the embedded engine, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
# The browser test (tests/browser): playwright-core drives Debian's chromium (no browser download).
CHROMIUM := /usr/bin/chromium
PY := $(VENV)/bin/python
export TIDEMARK_DB_PORT ?= 55432
export TIDEMARK_DB_DATA ?= $(CURDIR)/.tidemark/db
AIRFLOW_ENV = AIRFLOW_HOME=$(CURDIR)/.tidemark/airflow \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__UNIT_TEST_MODE=False \
	AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING \
	AIRFLOW_CONN_TIDEMARK_TIMESCALE=postgresql://postgres:postgres@127.0.0.1:$(TIDEMARK_DB_PORT)/postgres \
	PYTHONPATH=$(CURDIR)/plugins

.PHONY: help setup pg-setup redis-setup pg-start pg-stop airflow-port-free airflow-env test test-unit demo example load airflow bench db-start db-stop db-status clean

help:
	@echo "make demo    - set up, start the embedded TimescaleDB and run tidemark_backfill; prints the report"
	@echo "make test    - set up and run the whole test suite (starts its own engines)"
	@echo "make example - load the worked example: a YAML dataset over daily Parquet files (examples/weather/)"
	@echo "make load DATASET=name START=2024-01-01 END=2024-01-08 [BATCH=auto] [DATASETS_DIR=folder] - load your own dataset"
	@echo "     (demo, example and load show a progress bar and print the report; DEMO_CONF / EXAMPLE_CONF override their JSON conf)"
	@echo "make airflow - Airflow standalone on a PostgreSQL metadata DB (UI on localhost:\$$AIRFLOW_PORT, default 8080) wired to the embedded engine"
	@echo "make bench   - benchmarks (bench/), prints ratios and writes bench/results/"
	@echo "make db-start | db-stop | db-status - manage the embedded engine (TIDEMARK_DB_PORT=$(TIDEMARK_DB_PORT))"
	@echo "make pg-start | pg-stop - Airflow's PostgreSQL metadata DB (embedded/pgctl; make clean removes it)"

# Idempotent: each stamp is rebuilt only when its inputs change.
setup: $(VENV)/.stamp embedded/node_modules/.stamp pg-setup redis-setup tests/browser/node_modules/.stamp $(CHROMIUM)

# Debian's PostgreSQL 15 server (embedded/pgctl: Airflow's metadata DB for `make airflow` and the
# real-scheduler tests). Installed only where it is missing; no system cluster is created or started.
PG_BIN ?= /usr/lib/postgresql/15/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
pg-setup:
	@if [ ! -x $(PG_BIN)/initdb ]; then \
	  echo "installing postgresql-15 (apt-get)"; \
	  $(SUDO) mkdir -p /etc/postgresql-common; \
	  [ -f /etc/postgresql-common/createcluster.conf ] || echo 'create_main_cluster = false' | $(SUDO) tee /etc/postgresql-common/createcluster.conf >/dev/null; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    -o Dpkg::Options::=--force-confold postgresql-15 >/dev/null; \
	fi
	@test -x $(PG_BIN)/initdb || { echo "postgresql-15 is not installed ($(PG_BIN)/initdb missing)"; exit 1; }

# Debian's Redis server: the Celery broker of the CeleryExecutor test (tests/scheduler/test_celery_executor.py
# starts and stops a redis-server of its own on a free port). Installed only where it is missing; a
# policy-rc.d that denies every start (unless one is there already) keeps the package's own service down.
REDIS_SERVER ?= /usr/bin/redis-server
redis-setup:
	@if [ ! -x $(REDIS_SERVER) ]; then \
	  echo "installing redis-server (apt-get)"; \
	  ours=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && $(SUDO) chmod 755 /usr/sbin/policy-rc.d && ours=1; \
	  fi; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    -o Dpkg::Options::=--force-confold redis-server >/dev/null; \
	  [ -z "$$ours" ] || $(SUDO) rm -f /usr/sbin/policy-rc.d; \
	fi
	@test -x $(REDIS_SERVER) || { echo "redis-server is not installed ($(REDIS_SERVER) missing)"; exit 1; }

# `tidemark` (pyproject's console script) is a wrapper over the checkout, not `pip install -e .`: an installed package's
# airflow.plugins entry point would take the UI plugin over from plugins/tidemark_ui_plugin.py (tests/ui/test_plugin_loading.py).
$(VENV)/.stamp: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	printf '#!/bin/sh\nPYTHONPATH="%s/plugins$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s/$(PY)" -m tidemark "$$@"\n' "$(CURDIR)" "$(CURDIR)" >$(VENV)/bin/tidemark && chmod +x $(VENV)/bin/tidemark
	touch $@

embedded/node_modules/.stamp: embedded/package.json embedded/package-lock.json
	cd embedded && npm ci --no-audit --no-fund --loglevel=error
	touch $@

tests/browser/node_modules/.stamp: tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the browser test needs Debian's chromium at $(CHROMIUM) (apt-get install chromium)"; exit 1; }
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

db-start: setup
	@embedded/dbctl start

db-stop:
	@embedded/dbctl stop

db-status:
	@embedded/dbctl status

# Static checks first (seconds), then the suite. Config: [tool.mypy] / [tool.ruff] in pyproject.toml.
test: setup
	$(PY) -m mypy
	$(PY) -m ruff check .
	TIDEMARK_DEMO=on $(PY) -m pytest

test-unit: setup
	$(PY) -m pytest tests/unit

# `make demo` runs `airflow dags test` in one process: SQLite is enough there (and quicker to set up).
.tidemark/airflow/.migrated: $(VENV)/.stamp
	mkdir -p .tidemark/airflow
	$(AIRFLOW_ENV) $(VENV)/bin/airflow db migrate >/dev/null
	touch $@

# The run's conf (JSON), e.g. `make demo DEMO_CONF='{"dataset": "ledgers", "start": "2024-02-01", "end": "2024-02-03"}'`.
DEMO_CONF ?= {"dataset": "ledgers", "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00", "batch_interval": "auto"}
# Airflow's own log (the runner writes it to .tidemark/airflow/demo-dags-test.log); the runner prints progress and the
# report whatever this level is.
DEMO_LOG_LEVEL ?= INFO

demo: setup db-start .tidemark/airflow/.migrated
	$(AIRFLOW_ENV) TIDEMARK_DEMO=on AIRFLOW__LOGGING__LOGGING_LEVEL=$(DEMO_LOG_LEVEL) TIDEMARK_POKE_INTERVAL=1 $(PY) -m tidemark.demo '$(DEMO_CONF)'

# The worked example of "Load your own data": a YAML dataset over daily Parquet files, loaded by the same DAG.
EXAMPLE_CONF ?= {"dataset": "weather", "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-08T00:00:00+00:00", "batch_interval": "auto"}

example: setup db-start .tidemark/airflow/.migrated
	@test -d examples/weather/data || $(PY) examples/weather/generate.py
	$(AIRFLOW_ENV) AIRFLOW__LOGGING__LOGGING_LEVEL=$(DEMO_LOG_LEVEL) TIDEMARK_POKE_INTERVAL=1 \
	  TIDEMARK_DATASETS_DIR=$(CURDIR)/examples/weather $(PY) -m tidemark.demo '$(EXAMPLE_CONF)'

# Your own dataset from the shell: its YAML in dags/datasets/ (or DATASETS_DIR=folder), loaded into the embedded engine
# (or the server AIRFLOW_CONN_TIDEMARK_TIMESCALE names) by the same DAG, with a progress bar and the report.
DATASET ?=
START ?=
END ?=
BATCH ?= auto
DATASETS_DIR ?=
load: setup db-start .tidemark/airflow/.migrated
	@if [ -z "$(DATASET)" ] || [ -z "$(START)" ] || [ -z "$(END)" ]; then \
	  echo "usage: make load DATASET=<name> START=<ISO 8601> END=<ISO 8601> [BATCH=auto|'6 hours'] [DATASETS_DIR=<folder>]" >&2; \
	  echo "  e.g. make load DATASET=weather START=2024-01-01 END=2024-01-08 DATASETS_DIR=examples/weather" >&2; exit 2; fi
	$(AIRFLOW_ENV) AIRFLOW__LOGGING__LOGGING_LEVEL=$(DEMO_LOG_LEVEL) TIDEMARK_POKE_INTERVAL=1 \
	  $(if $(DATASETS_DIR),TIDEMARK_DATASETS_DIR=$(abspath $(DATASETS_DIR))) \
	  $(PY) -m tidemark.demo "dataset=$(DATASET)" "start=$(START)" "end=$(END)" "batch_interval=$(BATCH)"

# `make airflow`: scheduler, dag-processor, triggerer and api-server (`airflow standalone`) on a
# PostgreSQL metadata DB (embedded/pgctl: 127.0.0.1 only, port remembered beside the data dir unless TIDEMARK_PG_PORT
# is set). Data in .tidemark/pg, or, as root in a checkout the postgres OS user cannot enter (a clone in root's home),
# in /var/tmp/tidemark-pg-<hash of the checkout's path>/pg; TIDEMARK_PG_DATA overrides both. The task processes call
# the execution API on AIRFLOW_PORT too.
PG_DATA := $(shell TIDEMARK_PG_DATA='$(TIDEMARK_PG_DATA)' embedded/pgctl path)
export TIDEMARK_PG_DATA := $(PG_DATA)
AIRFLOW_PORT ?= 8080
PG_PORT = $(shell TIDEMARK_PG_DATA='$(TIDEMARK_PG_DATA)' TIDEMARK_PG_PORT='$(TIDEMARK_PG_PORT)' embedded/pgctl port)
AIRFLOW_METADATA = postgresql+psycopg2://postgres@127.0.0.1:$(PG_PORT)/airflow
# The demo's `ledgers` dataset is declared here (TIDEMARK_DEMO=on): the README's CLI reruns load it.
AIRFLOW_SERVE_ENV = $(AIRFLOW_ENV) TIDEMARK_DEMO=on \
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(AIRFLOW_METADATA) \
	AIRFLOW__CORE__EXECUTOR=LocalExecutor AIRFLOW__CORE__PARALLELISM=6 \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/

pg-start: pg-setup
	@embedded/pgctl start

pg-stop:
	@embedded/pgctl stop

# Migrating an up-to-date database is a no-op, but takes seconds: only when the venv changed.
# The stamp sits beside the cluster's data dir: a cluster made anew is migrated anew.
$(PG_DATA).airflow-migrated: $(VENV)/.stamp | pg-start
	@embedded/pgctl createdb airflow >/dev/null
	mkdir -p .tidemark/airflow
	$(AIRFLOW_SERVE_ENV) $(VENV)/bin/airflow db migrate >/dev/null
	touch $@

airflow-port-free:
	@if (exec 3<>/dev/tcp/127.0.0.1/$(AIRFLOW_PORT)) 2>/dev/null; then \
	  echo "error: port $(AIRFLOW_PORT) on 127.0.0.1 is already in use; run e.g. 'make airflow AIRFLOW_PORT=8081'" >&2; exit 1; fi

# `eval "$(make -s airflow-env)"`: a shell whose `airflow` CLI (backfill create, dags list-runs, ...)
# talks to the deployment `make airflow` runs (same home, metadata DB, ports).
airflow-env:
	@for kv in $(AIRFLOW_SERVE_ENV); do echo "export $$kv"; done
	@echo 'export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"'

# standalone starts its components as plain `airflow` from PATH: the venv goes first on PATH.
airflow: airflow-port-free setup db-start pg-start $(PG_DATA).airflow-migrated
	$(AIRFLOW_SERVE_ENV) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/airflow standalone

$(VENV)/.bench-stamp: bench/requirements.txt $(VENV)/.stamp
	$(PY) -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: setup $(VENV)/.bench-stamp
	TIDEMARK_DEMO=on $(PY) bench/run_all.py

clean:
	-embedded/dbctl stop
	-embedded/pgctl stop
	rm -rf .tidemark "$(PG_DATA)" "$(PG_DATA).log" "$(PG_DATA).port" "$(PG_DATA).initdb.log" "$(PG_DATA).airflow-migrated"
