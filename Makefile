# torchsmith: `make demo` and `make test` work on a fresh machine with Python >= 3.10, pip and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU build of torch: taken from local disk where it lies there, else from PyTorch's CPU index.
# Never a bare `torch`, which pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
EXTRAS ?= dev,data,plot,onnx,hf,notebook,diagram,tensorboard,bench,docs
PYTEST_ARGS ?=

.PHONY: install demo test lint bench docs clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.10 is needed" if sys.version_info < (3, 10) else 0)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c 'import torch' 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)" \
		|| $(PIP) install -q --index-url $(TORCH_CPU_INDEX) "torch>=2.4,<2.15"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/torchsmith demo

test: install
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

# The documentation site into site/ (mkdocs.yml); --strict: a broken link or reference fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build site src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
