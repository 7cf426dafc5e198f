"""The one definition of a run's score, shared by LR selection, statistics and figures.

A run's metric is accuracy (classification) or loss (adding, copy), on a split. A failed
run -- diverged, or a non-finite metric -- takes the trivial predictor's value (chance
accuracy, or the constant / memoryless loss): failures are counted, never dropped.
`score` is the accuracy, or minus the loss, so higher is better everywhere.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def trivial_score(runs: pd.DataFrame) -> pd.Series:
    """The trivial predictor's score per run (chance accuracy, or minus the constant predictor's loss)."""
    v = runs["baseline_value"].astype(float)
    return v.where(runs["baseline_metric"] == "acc", -v)


def outcome(runs: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """runs: one row per run with status, baseline_metric, baseline_value and the summary's
    final.<split>/acc and final.<split>/loss columns (as in runs.parquet).
    Returns columns metric, value, score, failed (same index)."""
    acc = runs["baseline_metric"] == "acc"
    nan = pd.Series(np.nan, index=runs.index)
    raw = runs.get(f"final.{split}/acc", nan).where(acc, runs.get(f"final.{split}/loss", nan)).astype(float)
    failed = (runs["status"] != "ok") | ~np.isfinite(raw)
    value = raw.where(~failed, runs["baseline_value"].astype(float))
    return pd.DataFrame({"metric": np.where(acc, f"{split}/acc", f"{split}/loss"), "value": value,
                         "score": value.where(acc, -value), "failed": failed}, index=runs.index)
