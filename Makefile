# Entry points for a fresh clone. Each target installs what it needs first.
#   make demo   set up, seed a demo team, run web + worker + sandbox until Ctrl-C
#   make smoke  run the whole sync path headless on samples/ and check every lead
#   make test   set up and run the test suite, browser tests included
#   make test-scale-out  the same suite on private PostgreSQL and Redis servers (needs
#               Debian's postgresql and redis-server packages)
#   make test-browser  run only the browser tests (needs Debian's chromium)
#   make screenshots   retake docs/screenshots/ from the browser tests' setup

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo smoke test test-scale-out test-browser screenshots env venv dev-venv

$(VENV)/.installed: requirements.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is required, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

dev-venv: $(VENV)/.dev-installed

# Writes .env from .env.example with fresh random keys, unless .env exists.
env: .env

.env: | $(VENV)/.installed
	$(PY) -m demo.make_env .env.example .env

demo: venv .env
	mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py demo

smoke: venv .env
	$(PY) manage.py smoke

test: dev-venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-scale-out: dev-venv
	$(PYTHON) -m local_servers run -- $(PY) -m pytest $(PYTEST_ARGS)

test-browser: dev-venv
	$(PY) -m pytest browser_tests $(PYTEST_ARGS)

screenshots: dev-venv
	$(PY) -m pytest browser_tests/screenshots.py $(PYTEST_ARGS)
