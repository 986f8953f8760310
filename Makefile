# Every set-up step lives here: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck imports unit manifests bench clean system-deps

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: venv
	$(VENV)/bin/pilotfish demo

test: venv lint typecheck imports unit

lint: venv
	$(VENV)/bin/ruff check operator xds tests bench
	$(VENV)/bin/ruff format --check operator xds tests bench

typecheck: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

# The capture tests need iptables inside network namespaces (CI runs as root).
system-deps:
	@command -v iptables >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null; \
	  else echo "iptables is missing and installing it needs root" >&2; exit 1; fi; }

unit: venv system-deps
	$(PY) -m pytest -q

manifests: venv
	$(PY) -m pilotfish_operator.crds manifests/crds

bench: venv
	$(PY) bench/run.py

clean:
	rm -rf $(VENV)
