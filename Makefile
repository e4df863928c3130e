# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv at the repository root when it is missing and reuse it otherwise; the install is
# redone only when pyproject.toml changes (stamp files), so a second run starts at once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 1
export DDE_BACKEND := pytorch

.PHONY: demo demo-forecast test lint bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Plain pip on purpose: it takes the local torch 2.14.1 wheel (uv/poetry would download ~3 GB).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip check
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/sciml solve legendre --out runs/demo/legendre --overwrite
	$(BIN)/sciml forecast demo --out runs/demo/forecast

# The full forecasting demo: year-long shallow-water data (built once into data/swe.zarr), the `demo` training
# config (curriculum stages), 5-day ensemble forecasts over the held-out year, scores and plots.
demo-forecast: $(VENV)/.installed
	$(BIN)/sciml forecast demo --full --out runs/demo/forecast-full

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every benchmark prints a table and writes JSON under runs/bench/ (see bench/README.md for the full runs).
bench: $(VENV)/.installed
	mkdir -p runs/bench
	$(BIN)/python bench/model_speed.py --out runs/bench/model_speed.json
	$(BIN)/python bench/data_synth.py --json runs/bench/data_synth.json
	$(BIN)/python bench/regrid.py --json runs/bench/regrid.json
	$(BIN)/python bench/loader.py --size small --json runs/bench/loader.json
	$(BIN)/python bench/distributed_scaling.py --json runs/bench/distributed_scaling.json
	$(BIN)/python bench/pinn_weighting.py --quick --json runs/bench/pinn_weighting.json
	$(BIN)/python bench/pinn_gravity.py --json runs/bench/pinn_gravity.json
	$(BIN)/python bench/pinn_ranges.py --quick --json runs/bench/pinn_ranges.json
	$(BIN)/python bench/infer_overhead.py --quick --json runs/bench/infer_overhead.json
	$(BIN)/python bench/infer_batch.py --quick --json runs/bench/infer_batch.json
	$(BIN)/python bench/startup.py --quick --json runs/bench/startup.json

clean-venv:
	rm -rf $(VENV)
