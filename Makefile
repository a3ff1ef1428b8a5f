# The verbs behind the README. Each creates .venv when it is missing (torch CPU wheel first).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
LOCK    := cluster/constraints.txt
PYTEST_ARGS ?=

.PHONY: demo test test-slow chaos lint bench bench-rlhf constraints clean

# Re-installs when the dependencies or their pins change (ray[tune,default]: the Jobs SDK and the
# dashboard's job server that `pbrl submit` and `ray start --head` need).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the local CPU wheel, so nothing pulls CUDA builds from the registry.
	$(PY) -m pip install -q torch==2.13.0
	# the same pins as every cluster node (cluster/Dockerfile, cluster/aws.yaml)
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	# A small real Figure 1 sweep through Ray Tune on an embedded local Ray (all CPUs), W&B offline:
	# 2 PBRL methods × 2 penalty constants, and independent PG, × 3 seeds = 15 trials (5 seed groups),
	# about 1 min on 2 cores; then the report.
	# The paper-size sweep is `pbrl sweep sweeps/fig1_stackelberg.yaml` (90 trials).
	WANDB_MODE=offline $(VENV)/bin/pbrl sweep sweeps/demo_fig1.yaml --out results/demo_fig1 --overwrite --no-report
	$(VENV)/bin/pbrl report results/demo_fig1
	@echo
	@echo "figure:           results/demo_fig1/figures/fig1_stackelberg.png"
	@echo "summary:          results/demo_fig1/report/summary.csv (and summary.parquet)"
	@echo "W&B offline runs: results/demo_fig1/<trial>/wandb/offline-run-*"
	@echo "                  upload later: $(VENV)/bin/wandb sync results/demo_fig1/*/wandb/offline-run-*"
	@echo "Tune state:       results/demo_fig1/_tune/demo_fig1 (resume after Ctrl-C: $(VENV)/bin/pbrl sweep --resume --out results/demo_fig1)"

test: $(STAMP)
	PYTHONHASHSEED=0 $(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-slow: $(STAMP)
	PYTHONHASHSEED=0 $(PY) -m pytest -n 2 -m slow $(PYTEST_ARGS)

chaos: $(STAMP)   # every fault-injection test (docs/RELIABILITY.md), the slow ones too
	PYTHONHASHSEED=0 $(PY) -m pytest -n 2 -m chaos $(PYTEST_ARGS)

lint: $(STAMP)   # style, types, and the layers of DESIGN.md §2 ([tool.importlinter] in pyproject.toml)
	$(VENV)/bin/ruff check pbrl_dist tests benchmarks
	$(VENV)/bin/mypy pbrl_dist
	$(VENV)/bin/lint-imports --no-logo --no-cache

bench: $(STAMP)
	$(PY) benchmarks/bench_tabular.py
	$(PY) benchmarks/bench_incentive.py
	$(PY) benchmarks/bench_rollouts.py

bench-rlhf: $(STAMP)   # end-to-end Atari training vs Stable-Baselines3 (benchmark-only extra)
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) benchmarks/bench_rlhf.py

constraints:   # re-pin $(LOCK) to what .venv has now (after installing changed dependencies)
	$(PY) cluster/lock_constraints.py

clean:
	rm -rf $(VENV) results .pytest_cache

.PHONY: cluster-token
cluster-token:   # docker compose's RAY_AUTH_TOKEN: written into .env (mode 0600) once, never printed
	python3 cluster/cluster_token.py
