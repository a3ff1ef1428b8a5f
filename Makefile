# The verbs behind the README. Each creates .venv when it is missing (torch CPU wheel first).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the local CPU wheel, so nothing pulls CUDA builds from the registry.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	# Figure 1 on all 10 games with one seed (~2 min on one core); the full 3-seed sweep is `pbrl run sweeps/fig1_stackelberg.yaml`.
	WANDB_MODE=offline $(VENV)/bin/pbrl run sweeps/fig1_stackelberg.yaml --out results/demo_fig1 --overwrite "sweep.seeds=[0]"

test: $(STAMP)
	PYTHONHASHSEED=0 $(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-slow: $(STAMP)
	PYTHONHASHSEED=0 $(PY) -m pytest -n 2 -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check pbrl_dist tests benchmarks
	$(VENV)/bin/mypy pbrl_dist/core pbrl_dist/config

bench: $(STAMP)
	$(PY) benchmarks/bench_tabular.py

clean:
	rm -rf $(VENV) results .pytest_cache
