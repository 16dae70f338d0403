# One job per target. Both create .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps fastmri==0.3.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vnrecon demo --out demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/espirit_speed.py
	$(BIN)/python benchmarks/vn_speed.py --size cpu
	$(BIN)/python benchmarks/openmp_wait.py
	$(BIN)/python benchmarks/simulate_speed.py
	$(BIN)/python benchmarks/dataset_speed.py

clean:
	rm -rf $(VENV) demo
