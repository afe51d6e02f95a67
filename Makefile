# One entry point for humans. `make run` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/art-images/train
export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install chromium run worker web demo test test-fast stop-test lint format typecheck bench-model bench-explain bench-import bench-api bench-search bench-label-issues loadtest faults stop clean

# Everything: serving (requirements.txt), training (requirements-training.txt: TensorFlow, Keras, the label check's
# libraries) and the development tools, so that `make run` starts the training worker too and `make test` runs it all.
$(STAMP): requirements.txt requirements-training.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned dependencies

run: install ## Migrate, ensure a curator account, start the worker and serve the portal on http://127.0.0.1:8000
	$(PY) manage.py setup_site
	$(PY) manage.py collectstatic --noinput -v 0
	@echo "Portal: http://127.0.0.1:8000  (log in as curator / curator)"
	bash scripts/run.sh

demo: install ## Import DATA=FOLDER, then run the portal as `make run` does
	$(PY) manage.py setup_site
	$(PY) manage.py import_artworks "$(DATA)"
	$(MAKE) run

test: install chromium ## The whole test suite (real PostgreSQL+pgvector and Redis, embedded; headless Chromium), then stop those servers
	$(PY) -m pytest; status=$$?; $(MAKE) --no-print-directory stop-test; exit $$status

# The browser test drives Debian's chromium package through Playwright (never `playwright install`, which
# downloads a browser). Installed here when missing; without apt or root the browser test skips and says why.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's chromium for the browser test"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else echo "warning: /usr/bin/chromium is missing and apt-get is unavailable (or not root): the browser test will be skipped"; fi

test-fast: install ## Tests without the slow ones (real worker processes, browser); their servers stay up for the next run
	$(PY) -m pytest -m "not slow"

lint: install ## ruff check and format check, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-model: install ## Model latency and throughput beside model.predict; start-up, memory and installed size of the serving runtime before (TensorFlow) and after (ai-edge-litert)
	$(PY) manage.py bench_model

bench-explain: install ## Explanation maps as the portal makes them: p50/p95 per map and per image, model calls, faithfulness; IMAGES=N, EXPLAIN_DATA=FOLDER for real images
	$(PY) manage.py bench_explain $(EXPLAIN_DATA) --images $(or $(IMAGES),20)

bench-import: install ## Import ../shared/data/art-images into a fresh database (artsite_bench, var/bench/media): images/s beside decode alone and model alone
	ARTSITE_DATABASE_NAME=artsite_bench DJANGO_MEDIA_ROOT=var/bench/media $(PY) manage.py bench_import ../shared/data/art-images

bench-api: install ## POST /api/v1/classify/ on gunicorn, >= 10,000 artworks (artsite_bench_api, var/bench-api/media): server p50/p95, req/s
	ARTSITE_DATABASE_NAME=artsite_bench_api DJANGO_MEDIA_ROOT=var/bench-api/media $(PY) manage.py bench_api

SIZES ?= 10000,100000,1000000
bench-search: install ## Similar works at 10k/100k/1M artworks (artsite_bench_search): HNSW build, p50/p95, recall@5; SIZES=10000,100000 for a quick run
	ARTSITE_DATABASE_NAME=artsite_bench_search $(PY) manage.py bench_search --sizes $(SIZES) --json var/bench-search/results.json

bench-label-issues: install ## Flip 5 % and 10 % of DATA's labels (seeded) and measure the mislabel detector: recall, precision, top-K share; contact sheet and CSV in var/bench
	$(PY) manage.py bench_label_issues --data "$(DATA)"

BASE_URL ?= http://127.0.0.1:8000
loadtest: install ## Against a running `make run` (or BASE_URL, loopback only): 50 uploads at once while 16 clients browse
	$(PY) manage.py loadtest --base-url $(BASE_URL)

faults: install ## Fault drills on their own servers (var/faults): worker SIGKILL, Redis down, PostgreSQL restart, broken model
	ARTSITE_VAR_DIR=$(CURDIR)/var/faults $(PY) manage.py faults

STOP_EMBEDDED = $(PY) -c "import sys; from pathlib import Path; from artsite import embedded; [(embedded.postgres_stop(Path(d, 'postgres')), embedded.redis_stop(Path(d, 'redis'))) for d in sys.argv[1:]]"

stop: ## Stop the embedded PostgreSQL and Redis: the portal's (var/), which stay up after `make run`, and the tests'
	-$(STOP_EMBEDDED) var $${ARTSITE_TEST_VAR_DIR:-var/test}

stop-test: ## Stop the tests' embedded PostgreSQL and Redis (`make test` does; `make test-fast` leaves them up)
	-$(STOP_EMBEDDED) $${ARTSITE_TEST_VAR_DIR:-var/test}

clean: stop ## Remove the virtualenv and all local data (database, media, trained models)
	rm -rf $(VENV) var staticfiles
