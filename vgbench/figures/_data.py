"""Small selection helpers shared by figure and table modules (no statistics here)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from vgbench.stats import log_rows  # noqa: F401 - the figures' rule for lines on a log axis


def spec(frames, name: str) -> dict:
    """The profile's `report.figures.<name>` entry: which study and variants a figure shows
    ({} when the profile names none; the figure then says so)."""
    return ((getattr(frames, "report", None) or {}).get("figures") or {}).get(name) or {}


def init_study(frames) -> str | None:
    return (getattr(frames, "report", None) or {}).get("init_study")


def with_labels(df: pd.DataFrame, col: str = "labels") -> pd.DataFrame:
    if df.empty or col not in df:
        return df
    lab = pd.DataFrame([json.loads(x) for x in df[col].astype(str)], index=df.index)
    return df.join(lab[[c for c in lab.columns if c not in df.columns]])


def matching(df: pd.DataFrame, sel: dict) -> pd.DataFrame:
    """The rows whose columns equal the spec's values ({axis or config key: value}; numbers compared
    as numbers, so depth 50 matches 50.0); none when a key is not a column."""
    for k, v in sel.items():
        if k not in df:
            return df.iloc[:0]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            df = df[pd.to_numeric(df[k], errors="coerce") == v]
        else:
            df = df[df[k].astype(str) == str(v)]
    return df


def final_runs(frames) -> pd.DataFrame:
    r = frames["runs"]
    return with_labels(r[r["stage"] == "final"]) if len(r) else r


def deepest(runs: pd.DataFrame, study: str):
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


def _ci95(values) -> tuple[float, float]:
    """A band's 95 % CI: the tables' method (stats.bootstrap_ci: percentile bootstrap of the mean,
    2000 resamples, seed 0) on the values in ascending order, so it does not depend on the order
    seaborn hands them over, and a figure drawn twice is the same file. (Seaborn's own bootstrap
    resampled in a Python loop: 2.3 M calls, 40 s of the default profile's grad_depth_init.)"""
    from vgbench.stats import bootstrap_ci
    return bootstrap_ci(np.sort(np.asarray(values, float)))


CI = {"errorbar": _ci95}
UNDERFLOWED = "no positive value: every norm\nunderflowed float32"


def log_lines(ax, data: pd.DataFrame, x: str, y: str, hue: str, **kw) -> bool:
    """Lines of `y` on a log axis, one per `hue`: the mean and 95 % CI of log10 (a geometric mean:
    the axis is made log before seaborn draws, so it averages log10 values) over the rows
    log_rows keeps. A panel left with nothing says why; False when nothing was drawn."""
    import seaborn as sns
    drawn = log_rows(data, [hue], x, y)
    if drawn.empty:
        from vgbench.figures import style
        style.empty(ax, *([UNDERFLOWED] if len(data) else []), blank=not len(data))
        return False
    ax.set_yscale("log")
    with warnings.catch_warnings():   # every line flat on an empty log axis: matplotlib widens it itself
        warnings.filterwarnings("ignore", "Attempting to set identical low and high ylims", UserWarning)
        sns.lineplot(drawn, x=x, y=y, hue=hue, ax=ax, linewidth=1, **CI, **kw)
    return True


def variant_lines(ax, data: pd.DataFrame, x: str, y: str, shown: list, legend: bool = True,
                  log: bool = False) -> None:
    """One line per shown variant (in `shown` order, same colour and dash everywhere), mean
    and 95 % CI over seeds (log: geometric, on a log axis, see log_lines); the legend, if any,
    outside on the right."""
    import seaborn as sns
    order = [v for v in shown if v in set(data["variant"])]
    kw = dict(hue_order=order, style="variant", style_order=order, legend=legend)
    if log:
        if not log_lines(ax, data, x, y, "variant", **kw):
            return
    else:
        sns.lineplot(data, x=x, y=y, hue="variant", ax=ax, linewidth=1, **CI, **kw)
    if legend and ax.get_legend():
        sns.move_legend(ax, "center left", bbox_to_anchor=(1, 0.5))


def deepest_of(frames, sp: dict, all_variants: bool = False):
    """(final runs of the spec's study at its deepest depth, restricted to the spec's variants
    unless all_variants, depth), or (None, None) when the profile has no such study."""
    runs = final_runs(frames)
    study = sp.get("study")
    d = deepest(runs, study) if len(runs) and study else None
    if d is None:
        return None, None
    sel = runs[(runs["study"] == study) & (runs["depth"] == d)]
    return (sel if all_variants else sel[sel["variant"].isin(sp.get("variants") or [])]), d


def conditions_of(frames, study: str) -> pd.DataFrame:
    """conditions.csv rows of one study with their axis values as columns: each condition's
    mean and the stats stage's seeded bootstrap CI (the same interval the tables print)."""
    c = frames["conditions"]
    if c.empty or "study" not in c:
        return c
    return with_labels(c[c["study"] == study].copy())


def ci_lines(ax, cond: pd.DataFrame, x: str, shown: list, y: str = "value", legend: bool = True) -> None:
    """One line per variant (in `shown` order) through the condition means, with the
    conditions' 95 % CI as a band: figures show the intervals the tables print."""
    import seaborn as sns
    order = [v for v in shown if v in set(cond["variant"])]
    colors = dict(zip(order, sns.color_palette("colorblind", len(order))))
    markers = "osD^vP*Xph"
    for i, v in enumerate(order):
        d = cond[cond["variant"] == v].sort_values(x)
        ax.plot(d[x], d[f"{y}_mean"], marker=markers[i % len(markers)], ms=3, lw=1, color=colors[v], label=v)
        ax.fill_between(d[x], d[f"{y}_ci_low"], d[f"{y}_ci_high"], color=colors[v], alpha=0.15, lw=0)
    if legend and order:
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=6)
