"""Small selection helpers shared by figure and table modules (no statistics here)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

MLP = "mlp_mitigations"
SHOWN = ["baseline", "relu_he", "batch_norm", "residual", "sigmoid_c01", "aux_loss", "greedy_pretrain", "modern"]


def with_labels(df: pd.DataFrame, col: str = "labels") -> pd.DataFrame:
    if df.empty or col not in df:
        return df
    lab = pd.DataFrame([json.loads(x) for x in df[col].astype(str)], index=df.index)
    return df.join(lab[[c for c in lab.columns if c not in df.columns]])


def final_runs(frames) -> pd.DataFrame:
    r = frames["runs"]
    return with_labels(r[r["stage"] == "final"]) if len(r) else r


def deepest(runs: pd.DataFrame, study: str = MLP):
    s = runs[runs["study"] == study]
    return None if s.empty or "depth" not in s or s["depth"].isna().all() else int(s["depth"].max())


def curves_of(frames, study: str, kind: str, run_ids=None) -> pd.DataFrame:
    c = frames["curves"]
    if c.empty:
        return c
    c = c[(c["study"] == study) & (c["kind"] == kind)]
    if run_ids is not None:
        c = c[c["run_id"].isin(list(run_ids))]
    return c.astype({"run_id": str, "variant": str, "name": str, "kind": str, "study": str})


def positive(df: pd.DataFrame, col: str = "value") -> pd.DataFrame:
    return df[np.isfinite(df[col]) & (df[col] > 0)]


def variant_lines(ax, data: pd.DataFrame, x: str, y: str, legend: bool = True) -> None:
    """One line per shown MLP variant (SHOWN order, same colour and dash everywhere), mean
    and 95 % CI over seeds; the legend, if any, outside on the right."""
    import seaborn as sns
    order = [v for v in SHOWN if v in set(data["variant"])]
    sns.lineplot(data, x=x, y=y, hue="variant", hue_order=order, style="variant", style_order=order,
                 errorbar=("ci", 95), ax=ax, legend=legend, linewidth=1)
    if legend and ax.get_legend():
        sns.move_legend(ax, "center left", bbox_to_anchor=(1, 0.5))


def deepest_mlp(frames, variants=SHOWN):
    """(final runs of the MLP study at its deepest depth, restricted to `variants`, depth),
    or (None, None) when the profile has no such study."""
    runs = final_runs(frames)
    d = deepest(runs) if len(runs) else None
    if d is None:
        return None, None
    sel = runs[(runs["study"] == MLP) & (runs["depth"] == d)]
    return (sel[sel["variant"].isin(variants)] if variants is not None else sel), d
