# climd: the two set-up-and-go commands are `make demo` and `make test` (see README).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CLIMD  := $(BIN)/climd
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# torch/torchvision: the releases that install from this machine kind's local disk.
ifeq ($(shell uname -m),aarch64)
TORCH  := torch==2.9.1 torchvision==0.24.1
else
TORCH  := torch==2.14.1 torchvision==0.29.1
endif
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo demo-run test bench reproduce reproduce-quick clean slurm-deps slurm-up slurm-down bench-images

install: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev,text]"
	rm -f $(VENV)/.installed-* && touch $@

# One pytest worker per CPU this process may use (at most 4); each is pinned to its own CPUs
# (tests/conftest.py), so the climd commands it starts size their threads to them.
TEST_WORKERS ?= $(shell n=$$(nproc); [ $$n -gt 4 ] && n=4; echo $$n)

test: install slurm-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# SLURM and MUNGE from Debian for the single-node test cluster (tests/slurm_cluster.py);
# does nothing when sbatch, slurmctld, slurmd and munged are already installed.
slurm-deps:
	bash scripts/slurm/install.sh

# A single-node SLURM on this machine to try `climd sweep --executor slurm` (docs/sweeps.md): writes
# /etc/slurm/slurm.conf (and a MUNGE key if none), starts munged, slurmctld and slurmd (needs root);
# `sinfo`/`sbatch` then work in any shell. slurm-down stops exactly those daemons.
slurm-up: slurm-deps
	python3 scripts/slurm/cluster.py up

slurm-down:
	python3 scripts/slurm/cluster.py down

clean:
	rm -rf cache .pytest_cache

# The main job on data shipped in the project (MOGONET ROSMAP): the product's answer, `climd compare
# --panel quick` (3 replicates: encode, score, fit-dist, schedule, CLIMD and its budget fix against the
# Baseline, a weighted loss and a balanced logistic regression), the schedule of one replicate, and
# the verdict printed at the end.
DEMO_CACHE ?= cache
DEMO := CLIMD_CACHE=$(DEMO_CACHE) $(CLIMD) --no-progress
demo: install
	@$(MAKE) --no-print-directory demo-run DEMO_CACHE=$(DEMO_CACHE)

demo-run:
	$(DEMO) compare --panel quick --replicates 3 --run demo --out $(DEMO_CACHE)/demo/compare
	$(DEMO) inspect schedule --run demo-r0
	@echo; cat $(DEMO_CACHE)/demo/compare/report.md

# Reproduction of the paper's tables on our data sets at 10 replicates (scripts/reproduce.py calls only
# the CLI; resumable: a rerun skips finished cells). Results go to results/ (results/README.md).
DATASETS ?= brca kipan lgg rosmap derm7pt cfcml table3
RUN_CLIMD := CLIMD="$(abspath $(CLIMD))"
reproduce: install
	$(RUN_CLIMD) $(BIN)/python scripts/reproduce.py $(DATASETS)

reproduce-%: install
	$(RUN_CLIMD) $(BIN)/python scripts/reproduce.py $*

# 2 replicates, 4 epochs, every code path, a few minutes; outputs under cache/quick (part of `make test`).
reproduce-quick: install
	$(RUN_CLIMD) CLIMD_CACHE=cache/quick RESULTS=cache/quick/results $(BIN)/python scripts/reproduce.py --quick brca derm7pt cfcml table3

# Wall time and peak memory per stage (CPU, and GPU when there is one).
BENCH_IMAGES ?= 256
bench: install
	$(BIN)/python scripts/bench.py --out results/bench --images $(BENCH_IMAGES)

# image encode img/s vs the decode/forward limits (makes bench-data/synthetic on first use)
bench-images: install
	$(BIN)/python scripts/bench.py --only-images --images $(if $(filter 0,$(BENCH_IMAGES)),512,$(BENCH_IMAGES))
