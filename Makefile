# medad: `make demo` runs the main job on the embedded data, `make test` runs the test suite.
# Each target creates .venv and installs medad into it first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= medad-runs

.PHONY: demo test lint bench-metrics clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/medad run --method ae --dataset synth-brain --out $(OUT)
	$(BIN)/medad run --method ae --dataset synth-brain --set latent_size=4 --out $(OUT)
	$(BIN)/medad run --method ae --dataset synth-chest --out $(OUT)
	$(BIN)/medad results --results $(OUT)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench-metrics: $(VENV)/.installed
	$(BIN)/python benchmarks/metrics.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
