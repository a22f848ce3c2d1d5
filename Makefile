# The two commands a newcomer needs:  make demo   and   make test
# Both create .venv on first use. torch is installed as the CPU build torch==2.13.0 when no torch is present,
# so pip never pulls a multi-GB CUDA build; GPU users: `make TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>" test`
# or install their own torch into .venv first (an existing torch is kept).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.attnrec-installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[dev,text,fast,serve,ann,reviews,plots,tune]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/attnrec demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m pip install -e ".[bench]"
	$(PY) benchmarks/bench_svd_surprise.py
	$(PY) benchmarks/bench_topk.py
	$(PY) benchmarks/bench_evaluator.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
