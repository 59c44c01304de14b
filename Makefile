# lookalike: every artifact is a file target; the recipes call thin CLIs.
# `make help` lists the targets.

DATA        ?= data/raw
SCALE       ?= small
SEED        ?= 0
FAMILY      ?= latent
CONFIG      ?= config/default.toml
BUILD       ?= data
REPORTS     ?= reports
SUBMISSIONS ?= submissions
VENV        ?= .venv
PYTHON      ?= python3
LOOKALIKE   ?= $(VENV)/bin/lookalike
PYTEST      ?= $(VENV)/bin/pytest

RAW        := $(DATA)/userFeature.data $(DATA)/adFeature.csv $(DATA)/train.csv $(DATA)/test1.csv
INTERIM    := $(BUILD)/interim
LOADED     := $(INTERIM)/users/vocab.json $(INTERIM)/ads.csv $(INTERIM)/pairs.npz
FOLDS      := $(BUILD)/folds/folds.npy
FEATURES   := $(addprefix $(BUILD)/features/,sparse_train.npz sparse_test.npz dense_train.npy dense_test.npy columns.json)
TRAINED    := $(BUILD)/pred/final.npz $(REPORTS)/cv.md
SUBMISSION := $(SUBMISSIONS)/submission.csv
TRUTH      := $(DATA)/test1.truth.csv

# No .DELETE_ON_ERROR, and every output is precious: each CLI writes its outputs under
# temporary names and renames them into place only when the stage has finished, so a
# failed or interrupted recipe leaves the previous outputs intact. make's own deletion
# (of every target of a grouped rule, on an error or a signal) would destroy them.
EXPLORED   := $(REPORTS)/explore.md
TUNED      := $(REPORTS)/tune.toml

.PRECIOUS: $(RAW) $(LOADED) $(FOLDS) $(FEATURES) $(REPORTS)/features.md $(TRAINED) $(SUBMISSION) $(EXPLORED) $(TUNED)
.DEFAULT_GOAL := help
.PHONY: help install data load folds features explore tune train submit all test bench clean clean-data

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-10s %s\n", $$1, $$2}'
	@echo "  variables: DATA=$(DATA) SCALE=$(SCALE) FAMILY=$(FAMILY) CONFIG=$(CONFIG) BUILD=$(BUILD)"

$(LOOKALIKE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

install: $(LOOKALIKE) ## create .venv and install the project with its test tools

# Synthetic data only when the competition files are absent (never overwrites).
$(RAW) &: | $(LOOKALIKE)
	$(LOOKALIKE) synth --out $(DATA) --scale $(SCALE) --seed $(SEED) --family $(FAMILY)

data: $(RAW) ## generate synthetic data into DATA if no competition files are there

$(LOADED) &: $(RAW) $(CONFIG) | $(LOOKALIKE)
	$(LOOKALIKE) load --users $(DATA)/userFeature.data --ads $(DATA)/adFeature.csv \
	  --train $(DATA)/train.csv --test $(DATA)/test1.csv --out $(INTERIM) --config $(CONFIG)

load: $(LOADED) ## parse the raw files into sparse matrices (data/interim)

$(FOLDS): $(INTERIM)/pairs.npz $(CONFIG) | $(LOOKALIKE)
	$(LOOKALIKE) folds --pairs $(INTERIM)/pairs.npz --out $@ --config $(CONFIG)

folds: $(FOLDS) ## write the project's one fold file

$(FEATURES) $(REPORTS)/features.md &: $(LOADED) $(FOLDS) $(CONFIG) | $(LOOKALIKE)
	$(LOOKALIKE) features --interim $(INTERIM) --folds $(FOLDS) --out $(BUILD)/features \
	  --report $(REPORTS)/features.md --config $(CONFIG)

features: $(FEATURES) ## build the sparse and dense feature sets

$(EXPLORED): $(LOADED) $(CONFIG) | $(LOOKALIKE)
	$(LOOKALIKE) explore --interim $(INTERIM) --report $@ --config $(CONFIG)

explore: $(EXPLORED) ## report on the loaded data and profile every seed (reports/explore.md, reports/seeds/)

# The study (tune.db) is never removed by make: a re-run resumes it (raise [tune] n_trials for more).
$(TUNED): $(FEATURES) $(FOLDS) $(CONFIG) | $(LOOKALIKE)
	$(LOOKALIKE) tune --features $(BUILD)/features --interim $(INTERIM) --folds $(FOLDS) \
	  --study $(REPORTS)/tune.db --out $@ --report $(REPORTS)/tune.md --config $(CONFIG)

tune: $(TUNED) ## search the settings with Optuna; best config in reports/tune.toml

$(TRAINED) &: $(FEATURES) $(FOLDS) $(CONFIG) | $(LOOKALIKE)
	$(LOOKALIKE) train --features $(BUILD)/features --interim $(INTERIM) --folds $(FOLDS) \
	  --build $(BUILD) --report $(REPORTS)/cv.md --config $(CONFIG) --truth $(TRUTH)

train: $(TRAINED) ## cross-validate the models; write predictions and reports/cv.md

$(SUBMISSION): $(BUILD)/pred/final.npz $(DATA)/test1.csv | $(LOOKALIKE)
	$(LOOKALIKE) submit --pred $(BUILD)/pred/final.npz --test $(DATA)/test1.csv --out $@

submit: $(SUBMISSION) ## write submissions/submission.csv

all: submit ## the whole pipeline

test: $(LOOKALIKE) ## run the test suite
	$(PYTEST) -q

bench: $(LOOKALIKE) ## run the benchmarks (see bench/README.md); BENCH_SCALE=medium|full
	$(MAKE) -f bench/Makefile LOOKALIKE=$(abspath $(LOOKALIKE)) PY=$(abspath $(VENV))/bin/python

clean: ## remove derived files (keeps DATA)
	rm -rf $(INTERIM) $(BUILD)/folds $(BUILD)/features $(BUILD)/oof $(BUILD)/pred $(BUILD)/models $(REPORTS) $(SUBMISSION)

clean-data: ## remove generated synthetic data in DATA (only if it is synthetic)
	@test -f $(DATA)/test1.truth.csv || { echo "$(DATA) holds no synthetic truth file: not removing it"; exit 1; }
	rm -f $(RAW) $(DATA)/test1.truth.csv
