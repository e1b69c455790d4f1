# evidence-vault developer tasks. `make demo` and `make test` work on a fresh Debian/Ubuntu machine
# with Python 3.11+; run as root (or with sudo) so the Debian tools the tests use can be installed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# Debian packages the tests and the demo need (command-line interop checks: openssl ts, ssh-keygen -Y;
# zsh, macOS's default shell, and perl's shasum: VERIFY.md's blocks are run in bash, zsh and dash, and
# with shasum where sha256sum is missing).
# Later additions go here, e.g. hashdeep (bench), chromium (HTML report rendering).
APT_PACKAGES ?= openssl openssh-client chromium poppler-utils zsh perl

.PHONY: setup apt venv demo test lint docs bench clean help

help:
	@echo "make setup   create $(VENV) (pip install -e '.[test]') and install missing Debian tools"
	@echo "make demo    run examples/demo.sh (ingest, verify, tamper detection)"
	@echo "make test    run the test suite"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make bench   run the benchmark (bench/run)"

setup: apt venv

# Install the Debian packages that are missing; apt-get update only when something is missing.
apt:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' && continue; \
	  missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "warning: missing Debian packages:$$missing"; \
	  echo "warning: install them with: sudo apt-get install -y$$missing (tests that need them will fail or skip)"; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install when pyproject.toml changes (editable install: code changes need nothing).
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

# The venv's bin/ first on PATH, as after activating it: tests run its console scripts (evidence-vault, ots).
# pytest exits 5 when it collects no tests: make fails then, it does not pass silently.
test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# docs/cli.md below its hand-written head is written from the CLI's own --help (tests/test_docs.py checks it).
docs: setup
	$(PY) -m tests.cli_reference --write

# The benchmark also compares against hashdeep.
bench: APT_PACKAGES += hashdeep
bench: setup
	@if [ -x bench/run ]; then PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bench/run; \
	elif [ -f bench/run ]; then PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash bench/run; \
	else echo "no bench/run yet: nothing to benchmark"; fi

clean:
	rm -rf .demo .pytest_cache .mypy_cache .ruff_cache
