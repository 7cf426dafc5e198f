# Two commands for a fresh machine: `make reproduce` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
CORES   ?= $(shell nproc 2>/dev/null || echo 2)
PROFILE ?= configs/default.yaml
# the default profile writes results/ (and paper/vgbench.pdf); any other results/<its file name>/,
# as `make frontier` etc. do, so reproducing another profile never replaces the default's outputs
RESULTS ?= $(if $(filter default.yaml,$(notdir $(PROFILE))),results,results/$(basename $(notdir $(PROFILE))))
# torch first, pinned: any other torch request can pull a multi-GB CUDA build.
TORCH   := torch==2.13.0

.PHONY: reproduce frontier theory followup replication smoke test install install-dev report verify bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/pip install -q $(TORCH) -e '.[dev]'
	touch $@

install: $(BIN)/.installed
install-dev: $(BIN)/.installed-dev

SNAKE := WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/snakemake --workflow-profile workflow/profiles/local

reproduce: $(BIN)/.installed
	$(BIN)/vgbench grid $(PROFILE) --jobs > /dev/null  # a bad PROFILE fails here, before the TeX install
	workflow/scripts/install_tex.sh
	$(BIN)/vgbench unlock-stale .
	$(SNAKE) --cores $(CORES) --configfile $(PROFILE) --config results=$(RESULTS)

test: $(BIN)/.installed-dev
	WANDB_MODE=$${WANDB_MODE:-disabled} $(BIN)/python -m pytest -q

# the modern mitigations (ReZero, Fixup, LSUV, chrono init, pre-LN transformers): results/frontier/
frontier: $(BIN)/.installed
	$(BIN)/vgbench unlock-stale .
	$(SNAKE) --cores $(CORES) --configfile configs/frontier.yaml --config results=results/frontier

# the mean-field phase diagram and dynamical isometry: results/theory/
theory: $(BIN)/.installed
	$(BIN)/vgbench unlock-stale .
	$(SNAKE) --cores $(CORES) --configfile configs/theory.yaml --config results=results/theory

# pre-registered follow-ups of default-profile claims whose design lacked power: results/followup/
followup: $(BIN)/.installed
	$(BIN)/vgbench unlock-stale .
	$(SNAKE) --cores $(CORES) --configfile configs/followup.yaml --config results=results/followup

# pre-registered replications of the claims whose verdicts moved with the CPU: results/replication/
replication: $(BIN)/.installed
	$(BIN)/vgbench unlock-stale .
	$(SNAKE) --cores $(CORES) --configfile configs/replication.yaml --config results=results/replication

smoke: $(BIN)/.installed
	$(BIN)/vgbench unlock-stale .
	$(SNAKE) --cores $(CORES) --configfile configs/smoke.yaml --config results=results/smoke

report: $(BIN)/.installed
	$(SNAKE) --cores 1 --configfile $(PROFILE) --config results=$(RESULTS) --report $(RESULTS)/report.html

verify: $(BIN)/.installed
	$(BIN)/vgbench verify $(RESULTS)/MANIFEST.json

bench: $(BIN)/.installed
	$(BIN)/vgbench bench

clean:
	rm -rf results/runs results/aggregate results/tuning results/stats results/figures results/tables \
	       results/logs results/jobs results/paper_build results/MANIFEST.json results/wandb_summary.json .snakemake
