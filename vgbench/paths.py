"""The one module that knows the results folder layout (DESIGN.md's run-directory contract)."""
from __future__ import annotations

from pathlib import Path

CONFIG = "config.json"
METRICS = "metrics.csv"
GRADIENTS = "gradients.parquet"
SUMMARY = "summary.json"
WANDB = "wandb"


def runs_dir(results: str | Path = "results") -> Path:
    return Path(results) / "runs"


def run_dir(run_id: str, results: str | Path = "results") -> Path:
    return runs_dir(results) / run_id


def is_complete(run: str | Path) -> bool:
    """A run is complete when its summary.json exists (it is written last, atomically)."""
    return (Path(run) / SUMMARY).is_file()
