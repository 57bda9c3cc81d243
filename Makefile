# medad: `make demo` runs the main job on the embedded data, `make test` runs the test suite.
# Each target creates .venv and installs medad into it first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= medad-runs

.PHONY: demo test browser lint bench-metrics clean

# the demo needs medad alone; the tests also need the dev extra (pytest, ruff, ...)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# one table per dataset, so that each fits a 100-column terminal
DEMO_METRICS := --metric image_auroc --metric pixel_ap --metric best_dice --metric aupro

demo: $(VENV)/.installed
	$(BIN)/medad bench configs/demo.yaml --results $(OUT)
	$(BIN)/medad table --results $(OUT) --dataset synth-brain $(DEMO_METRICS)
	$(BIN)/medad table --results $(OUT) --dataset synth-chest $(DEMO_METRICS)
	$(BIN)/medad report --results $(OUT) --out $(OUT)/report --overwrite

test: $(VENV)/.installed-dev browser
	$(BIN)/python -m pytest -q

# The report's test opens the page in headless Chromium; install it where we can (root + apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "note: no Chromium; the report's browser test will be skipped"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench-metrics: $(VENV)/.installed
	$(BIN)/python benchmarks/metrics.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
