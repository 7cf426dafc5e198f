"""The one module that knows the results folder layout (DESIGN.md's data flow and run-directory
contract). Every stage, the Snakefile and the tests build their paths with these functions."""
from __future__ import annotations

import os
from pathlib import Path

# inside a run directory
CONFIG = "config.json"
METRICS = "metrics.csv"
GRADIENTS = "gradients.parquet"
SUMMARY = "summary.json"
WANDB = "wandb"
RUN_FILES = (CONFIG, METRICS, GRADIENTS, SUMMARY)

# the stage folders under a results folder, in pipeline order
RUNS, JOBS, TUNING, AGGREGATE, STATS, FIGURES, TABLES = "runs", "jobs", "tuning", "aggregate", "stats", "figures", "tables"
AGGREGATES = ("runs", "curves")                                          # aggregate/<name>.parquet
STATS_TABLES = ("conditions", "comparisons", "friedman", "ranks", "claims")  # stats/<name>.csv
THEORY = "theory"                                                        # stats/theory.csv
PAPER = "paper/vgbench.pdf"  # the default results folder's paper (DESIGN.md); others: <results>/vgbench.pdf


def runs_dir(results: str | Path = "results") -> Path:
    return Path(results) / RUNS


def run_dir(run_id: str, results: str | Path = "results") -> Path:
    return runs_dir(results) / run_id


def is_complete(run: str | Path) -> bool:
    """A run is complete when its summary.json exists (it is written last, atomically)."""
    return (Path(run) / SUMMARY).is_file()


def job_marker(stage: str, job: str, results: str | Path = "results") -> Path:
    """The Snakemake output of one training job: written after all of its runs are complete."""
    return Path(results) / JOBS / stage / f"{job}.json"


def selected_lr(results: str | Path = "results") -> Path:
    return Path(results) / TUNING / "selected_lr.csv"


def aggregate(name: str, results: str | Path = "results") -> Path:
    return Path(results) / AGGREGATE / f"{name}.parquet"


def stats(name: str, results: str | Path = "results") -> Path:
    return Path(results) / STATS / f"{name}.csv"


def figure(name: str, ext: str, results: str | Path = "results") -> Path:
    return Path(results) / FIGURES / f"{name}.{ext}"


def table(name: str, results: str | Path = "results") -> Path:
    return Path(results) / TABLES / f"{name}.tex"


def manifest(results: str | Path = "results") -> Path:
    return Path(results) / "MANIFEST.json"


def wandb_summary(results: str | Path = "results") -> Path:
    return Path(results) / "wandb_summary.json"


def paper_build(results: str | Path = "results") -> Path:
    return Path(results) / "paper_build"


def paper(results: str | Path = "results") -> str:
    """Where the paper of a results folder goes: paper/vgbench.pdf for the default folder,
    <results>/vgbench.pdf for any other (so `make smoke` never overwrites the paper)."""
    return PAPER if os.path.normpath(str(results)) == "results" else f"{results}/vgbench.pdf"
