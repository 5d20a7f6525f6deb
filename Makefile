# The two commands: `make run` and `make test`. Both set everything up and are idempotent.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)

.PHONY: run test setup format tools worker beat bench soak-scale messages

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the browser tests (Playwright drives it; no browser download), wrk for
# the benchmark harness's smoke test (tests/bench), HAProxy and PgBouncer for the scale-out soak
# (tests/scaleout). Installed when missing and we are root.
tools:
	@missing=""; [ -x /usr/bin/chromium ] || missing=" chromium"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	for tool in haproxy pgbouncer; do \
	  [ -x /usr/sbin/$$tool ] || command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian packages:$$missing (browser, benchmark and scale-out tests)..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
	else echo "Not found:$$missing (Debian packages): those tests will be skipped."; fi

# `make run PORT=8080` serves on another port.
PORT ?= 8000
run: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --port $(PORT)
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

test: setup tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest $(PYTEST_ARGS)

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

worker: setup
	$(BIN)/celery -A beem_admin worker --loglevel=INFO

beat: setup
	$(BIN)/celery -A beem_admin beat --loglevel=INFO

# The Entra-scale benchmark (README "Benchmarks"): needs PostgreSQL (BENCH_PG_URL), redis-server
# and wrk. `make bench USERS=100000`; extra options via BENCH_ARGS (see bench/run.py --help).
USERS ?= 10000
bench: setup
	@command -v wrk >/dev/null 2>&1 || { if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null; \
	  else echo "wrk is required (Debian: apt-get install wrk)"; exit 1; fi; }
	$(BIN)/python bench/run.py --users $(USERS) $(BENCH_ARGS)

# The scale-out soak (README "Scaling"): Entra-like traffic through HAProxy to two gunicorn
# groups, two Celery workers and PgBouncer in transaction mode, killing a worker or a web group
# every KILL_EVERY seconds; then every change must be applied, nothing lost or duplicated, no
# two drains of one organization at once, nothing session-level left behind PgBouncer. Needs
# PostgreSQL on 127.0.0.1:5432 (creates beem_scale_soak), redis-server, haproxy, pgbouncer.
MINUTES ?= 5
KILL_EVERY ?= 45
soak-scale: setup tools
	$(BIN)/python bench/soak.py --scale-out --minutes $(MINUTES) --kill-interval $(KILL_EVERY) \
	  $(SOAK_ARGS)

# Regenerate the Arabic catalogs (needs GNU gettext): the project one in locale/ and the
# directory_sync one in directory_sync/locale/.
messages: setup
	$(BIN)/python manage.py makemessages -l ar --ignore=.venv --ignore='directory_sync/*' \
	  --ignore='templates/directory_sync/*' --ignore='tests/*' --ignore='bench/*'
	# makemessages only scans the current tree: link the app's templates in for the run.
	cd directory_sync && ln -sfn ../templates/directory_sync _templates && \
	  ../$(BIN)/python ../manage.py makemessages -l ar --symlinks -i migrations; rm -f _templates
	$(BIN)/python manage.py compilemessages --ignore=.venv
