# Oxford Flowers-102 transfer learning. `make help` lists the targets.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# Where `make test` runs the notebooks (synthetic data, thrown away each run).
NBVAL_DATA := $(CURDIR)/build/nbval-data
EXECUTED   := build/executed

.DEFAULT_GOAL := help
.PHONY: help venv test unit notebooks lint format run demo clean clean-data

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11, 4) else "Python 3.11.4 or newer is needed; run: make PYTHON=/path/to/python3.11 ...")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

venv: $(STAMP) ## create .venv and install everything (done by the other targets when missing)

lint: $(STAMP) ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## format code and notebooks with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: $(STAMP) ## unit tests only
	$(PY) -m pytest tests

notebooks: $(STAMP) ## the four notebooks under nbval (smoke profile, synthetic data)
	rm -rf $(NBVAL_DATA)
	FLOWERS_PROFILE=smoke FLOWERS_DATA_DIR=$(NBVAL_DATA) $(PY) -m pytest --nbval-lax -p no:cacheprovider $(NOTEBOOKS)

test: lint unit notebooks ## everything CI runs: lint, unit tests, notebooks under nbval

run: $(STAMP) ## the four notebooks on the real dataset (full profile); executed copies in build/executed/full
	mkdir -p $(EXECUTED)/full
	for nb in $(NOTEBOOKS); do \
	  FLOWERS_PROFILE=$${FLOWERS_PROFILE:-full} $(VENV)/bin/jupyter nbconvert --to notebook --execute \
	    --ExecutePreprocessor.timeout=-1 --output-dir $(EXECUTED)/full $$nb || exit 1; \
	done
	@echo "Executed notebooks: $(EXECUTED)/full"

demo: $(STAMP) ## the four notebooks offline on synthetic data (1-2 min); copies in build/executed/smoke
	mkdir -p $(EXECUTED)/smoke
	for nb in $(NOTEBOOKS); do \
	  FLOWERS_PROFILE=smoke $(VENV)/bin/jupyter nbconvert --to notebook --execute \
	    --ExecutePreprocessor.timeout=-1 --output-dir $(EXECUTED)/smoke $$nb || exit 1; \
	done
	@echo "Executed notebooks: $(EXECUTED)/smoke"

clean: ## remove build outputs and caches (keeps .venv and downloaded data)
	rm -rf build .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

clean-data: ## ALSO delete the downloaded dataset and trained models (asks first)
	@$(PY) -m flowerlib.cli clean-data
