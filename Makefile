# The README's two commands: `make demo` and `make test` (as root on Debian 12).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo bench lint clean

setup:
	@bash scripts/setup.sh

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m xdplb.demo

bench: setup
	$(PY) bench/datapath.py
	$(PY) bench/e2e.py
	$(PY) bench/control.py
	$(PY) bench/health.py
	$(PY) bench/failover.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
