# One entry point for humans. `make run` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/art-images/train
export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install chromium run worker web demo test test-fast stop-test lint format typecheck bench-model bench-explain bench-import bench-api bench-search bench-label-issues bench-near-duplicates loadtest faults stop clean
.PHONY: bench-pages
.PHONY: bench-map bench-export

# Everything: serving (requirements.txt), training (requirements-training.txt: TensorFlow, Keras, the label check's
# libraries) and the development tools, so that `make run` starts the training worker too and `make test` runs it all.
$(STAMP): requirements.txt requirements-training.txt requirements-dev.txt requirements-nodeps.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned dependencies

run: install ## Migrate, ensure a curator account, start the worker and serve the portal on http://127.0.0.1:8000
	$(PY) manage.py setup_site --dev-curator
	$(PY) manage.py collectstatic --noinput -v 0
	@echo "Portal: http://127.0.0.1:8000  (log in as curator / curator)"
	bash scripts/run.sh

demo: install ## Import DATA=FOLDER, then run the portal as `make run` does
	$(PY) manage.py setup_site --dev-curator
	$(PY) manage.py import_artworks "$(DATA)"
	$(MAKE) run

test: install chromium mirador ## The whole test suite (real PostgreSQL+pgvector and Redis, embedded; headless Chromium), then stop those servers
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

PAGE_SIZES ?= 10000,1000000
bench-pages: install ## Every portal page and API route at 10k and 1M artworks (artsite_bench_pages): server-side p50/p95, page sizes, ratio 1M/10k; PAGE_SIZES=10000,100000 for a quick run
	ARTSITE_DATABASE_NAME=artsite_bench_pages $(PY) manage.py bench_pages --sizes $(PAGE_SIZES) --json var/bench-pages/results.json
EXPORT_DB ?= artsite_bench_pages
EXPORT_FORMAT ?= csv
bench-export: install ## Stream the export of a bench catalogue (EXPORT_DB, default the 1M one bench-pages builds; read-only): rows/s and resident memory at 1k, 10k, 100k, 1M rows
	ARTSITE_DATABASE_NAME=$(EXPORT_DB) $(PY) manage.py bench_export --format $(EXPORT_FORMAT)

MAP_SIZES ?= 100000,1000000
bench-map: install ## The collection map at 100k/1M works (artsite_bench_map): layout time, the binary's size and server time; MAP_SIZES=100000 for a quick run
	ARTSITE_DATABASE_NAME=artsite_bench_map $(PY) manage.py bench_map --sizes $(MAP_SIZES)

bench-label-issues: install ## Flip 5 % and 10 % of DATA's labels (seeded) and measure the mislabel detector: recall, precision, top-K share; contact sheet and CSV in var/bench
	$(PY) manage.py bench_label_issues --data "$(DATA)"

bench-near-duplicates: install ## 300 seeded altered copies mixed into ../shared/data/art-images (train+val): recall of the copies and false pairs among distinct works, for a sweep of rules and the shipped one
	nice -n 10 $(PY) manage.py bench_near_duplicates ../shared/data/art-images/train ../shared/data/art-images/val

BASE_URL ?= http://127.0.0.1:8000
loadtest: install ## Against a running `make run` (or BASE_URL, loopback only): 50 uploads at once while 16 clients browse
	$(PY) manage.py loadtest --base-url $(BASE_URL)

.PHONY: loadtest-burst cluster-drill
loadtest-burst: install ## Against a running `make run` (loopback only): 200 uploads at once, no browsing: time until all ready, the workers' artworks/s beside the import's (measured in the same run, into the same site)
	$(PY) manage.py loadtest --base-url $(BASE_URL) --burst

cluster-drill: install ## Two web servers, two workers and beat with no shared disk (PostgreSQL, Redis and moto's S3 only; var/cluster): upload via one, read via the other, SIGKILL a worker mid-batch, import from a third process
	ARTSITE_VAR_DIR=$(CURDIR)/var/cluster $(PY) manage.py cluster_drill

faults: install ## Fault drills on their own servers (var/faults): worker SIGKILL, Redis down, PostgreSQL restart, broken model
	ARTSITE_VAR_DIR=$(CURDIR)/var/faults $(PY) manage.py faults

STOP_EMBEDDED = $(PY) -c "import sys; from pathlib import Path; from artsite import embedded; [(embedded.postgres_stop(Path(d, 'postgres')), embedded.redis_stop(Path(d, 'redis'))) for d in sys.argv[1:]]"

stop: ## Stop the embedded PostgreSQL and Redis: the portal's (var/), which stay up after `make run`, and the tests'
	-$(STOP_EMBEDDED) var $${ARTSITE_TEST_VAR_DIR:-var/test}

stop-test: ## Stop the tests' embedded PostgreSQL and Redis (`make test` does; `make test-fast` leaves them up)
	-$(STOP_EMBEDDED) $${ARTSITE_TEST_VAR_DIR:-var/test}

clean: stop ## Remove the virtualenv and all local data (database, media, trained models)
	rm -rf $(VENV) var staticfiles

# Mirador (the IIIF viewer the browser test opens a manifest in): its self-contained UMD bundle from the npm
# registry, pinned; `npm pack` fetches only the package (none of its React peer dependencies, which the bundle
# includes). Without npm the Mirador test is skipped and says why.
MIRADOR_VERSION ?= 4.0.0
MIRADOR_DIR := var/mirador
.PHONY: mirador
mirador: $(MIRADOR_DIR)/$(MIRADOR_VERSION)/mirador.min.js ## Fetch Mirador's bundle for the browser test (var/mirador)
$(MIRADOR_DIR)/$(MIRADOR_VERSION)/mirador.min.js:
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p $(MIRADOR_DIR)/$(MIRADOR_VERSION) && cd $(MIRADOR_DIR)/$(MIRADOR_VERSION) && \
		npm pack --silent mirador@$(MIRADOR_VERSION) >/dev/null && \
		tar xzf mirador-$(MIRADOR_VERSION).tgz --strip-components=2 package/dist/mirador.min.js && \
		tar xzf mirador-$(MIRADOR_VERSION).tgz --strip-components=1 package/LICENSE && \
		rm mirador-$(MIRADOR_VERSION).tgz || { echo "warning: could not fetch Mirador from npm: the Mirador browser test will be skipped"; \
		rm -f $(MIRADOR_DIR)/$(MIRADOR_VERSION)/mirador.min.js; }; \
	else echo "warning: npm is missing: the Mirador browser test will be skipped"; fi
