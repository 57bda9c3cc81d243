"""Benchmarks: YAML experiments over methods × datasets × seeds, resumable, on any executor."""

from medad.bench.config import Experiment, load_experiment
from medad.bench.grid import Cell, plan_cells, plan_rows, run_grid

__all__ = ["Cell", "Experiment", "load_experiment", "plan_cells", "plan_rows", "run_grid"]
