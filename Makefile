# Set-up and entry points. `make demo` and `make test` are all a new user needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: venv install demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/modelprint demo --out demo-out

test: install
	bash scripts/system-deps.sh
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

bench: install
	$(PIP) install --quiet -e ".[bench]"
	$(PY) benchmarks/bench_generation.py
	$(PY) benchmarks/bench_zoo.py
	$(PY) benchmarks/bench_runner.py
	@echo "sequential verification needs a zoo: python benchmarks/bench_sequential.py --zoo DIR"

clean:
	rm -rf $(VENV) demo-out .pytest_cache
