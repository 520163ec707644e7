# Set-up and entry points. `make demo` and `make test` are all a new user needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build: an unpinned torch pulls a multi-GB CUDA build. The package accepts a range.
TORCH ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test lint bench docs clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# A local wheel or mirror first (no network round trips); else PyTorch's CPU index.
	$(PIP) install --quiet "$(TORCH)" 2>/dev/null || $(PIP) install --quiet "$(TORCH)" --extra-index-url $(TORCH_INDEX)
	touch $@

# The demo needs the package and matplotlib for its report's plots; its data (digits) ships with scikit-learn.
$(VENV)/.installed-demo: pyproject.toml $(VENV)/.torch
	$(PIP) install --quiet -e ".[report]"
	touch $@

# The tests need every extra (ONNX, serving, plots, Ray) and the test tools.
$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(PIP) install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed-test

demo: $(VENV)/.installed-demo
	$(VENV)/bin/modelprint demo --out demo-out

test: $(VENV)/.installed-test
	bash scripts/system-deps.sh
	$(VENV)/bin/ruff check src tests benchmarks scripts
	# Test files spread over one worker process per core (at most 4; a file stays on one worker), each
	# torch on one thread: on 2 cores, 437 s against 682 s in one process.
	OMP_NUM_THREADS=1 $(PY) -m pytest -n auto --maxprocesses 4 --dist loadfile

docs: $(VENV)/.installed-test
	$(PY) scripts/make_docs.py

bench: $(VENV)/.installed-test
	$(PIP) install --quiet -e ".[bench]"
	$(PY) benchmarks/bench_generation.py
	$(PY) benchmarks/bench_zoo.py
	$(PY) benchmarks/bench_runner.py
	@echo "sequential verification needs a zoo: python benchmarks/bench_sequential.py --zoo DIR"

clean:
	rm -rf $(VENV) demo-out .pytest_cache
