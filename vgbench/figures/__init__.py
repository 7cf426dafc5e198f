"""Figures: one module per figure, each exposing `make(frames) -> Figure`.

`frames` is a dict of DataFrames read from the results tree (`load_frames`): runs, curves
(aggregate), conditions, comparisons, claims, ranks, friedman (stats) and theory. Figure
modules only plot: every statistic they show comes from results/stats or is a seaborn
mean with its bootstrap CI over seeds (geometric, for gradient norms on a log axis).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from vgbench import paths

NAMES = paths.FIGURE_NAMES

CAPTIONS = {
    "grad_depth_init": "Back-propagated error norm per layer at initialisation, by activation and init "
                       "(geometric mean and 95% CI over seeds); dashed: mean-field prediction.",
    "grad_depth_training": "Back-propagated error norm per layer early, mid-way and at the end of training, "
                           "deepest MLP, baseline vs mitigations (geometric mean and 95% CI over seeds).",
    "grad_ratio_curves": "First/last-layer weight-gradient ratio over training, deepest MLP (geometric mean and 95% CI over seeds).",
    "accuracy_vs_depth": "Test score vs depth: MLP mitigations and plain CNN vs ResNet (95% CI over seeds).",
    "mitigation_effects": "Effect of each mitigation vs its baseline (difference in score, 95% bootstrap CI); "
                          "filled markers: significant after Holm correction.",
    "rnn_grad_time": "Gradient norm reaching each time step at initialisation, recurrent models, longest sequences "
                     "(geometric mean and 95% CI over seeds).",
    "length_vs_depth": "Error norm at initialisation per time step of a recurrent net and per layer of an MLP, "
                       "counted back from the output and relative to it (mean and 95% CI over seeds); dashed: "
                       "the mean-field prediction per layer.",
    "rnn_seq_len": "Task score vs sequence length per recurrent model; dotted: trivial predictor.",
    "training_curves": "Training loss vs step per condition (mean and 95% CI over seeds).",
    "saturation": "Saturated (sigmoid/tanh) or dead (ReLU family) fraction per layer over training.",
    "critical_difference": "Mean rank of the MLP mitigations (Friedman test; bar: Nemenyi critical difference).",
    "lr_sensitivity": "Validation score vs learning rate in the tuning stage.",
    "exploding": "Exploding gradients: divergence rate, largest gradient norm and the weights' L2 norm over training "
                 "(mean over seeds, at each evaluation and at divergence; symlog step axis), with and without clipping, "
                 "weight decay or a lower learning rate; one row per study (deep ReLU MLPs, the shallow ReLU net).",
    "phase_diagram": "(a) Test score of tanh MLPs over weight variance and depth (mean over seeds); dashed: "
                     "mean-field theory's trainable depth 6 xi_c; dotted: the critical weight variance; circles: the deepest "
                     "depth that trained (mean score above the trivial predictor by 0.05). "
                     "(b) Spread of the input-output Jacobian's singular values at init vs depth, Gaussian vs "
                     "orthogonal weights at tanh's critical point (mean and 95% CI over seeds).",
}


class Frames(dict):
    """The results tree's tables, each read on first use: most figures and tables need two
    or three of them, and curves.parquet is by far the largest."""

    SOURCES = {**{k: paths.aggregate(k, ".") for k in paths.AGGREGATES},
               **{k: paths.stats(k, ".") for k in (*paths.STATS_TABLES, paths.THEORY)}}

    def __init__(self, results: str | Path, report: dict | None = None):
        super().__init__()
        self.results = Path(results)
        self.report = report or {}   # the profile's `report:` section: what each figure shows

    def get(self, key: str, default=None):
        """Like frames[key] for every table of the results tree (dict.get alone would skip
        __missing__ and return None for a table not read yet)."""
        return self[key] if key in self or key in self.SOURCES else default

    def __missing__(self, key: str) -> pd.DataFrame:
        p = self.results / self.SOURCES[key]
        if not p.exists() or p.stat().st_size <= 1:
            df = pd.DataFrame()
        else:
            df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
        self[key] = df
        return df


def load_frames(results: str | Path, report: dict | None = None) -> Frames:
    return Frames(results, report)
