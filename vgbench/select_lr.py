"""`vgbench select-lr`: pick each condition's learning rate from the tuning runs.

Score: final validation accuracy (classification) or minus the validation loss (adding,
copy), averaged over the tuning seeds. A diverged tuning run scores as a failure: chance
accuracy, or the trivial predictor's loss. The lr with the best mean score wins (ties:
the smaller lr). A condition whose every lr diverged is recorded (all_diverged) and gets
the smallest lr, so its final runs still happen and count as failures downstream.
Output: one row per (condition, lr) with `selected` marking the winner.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from vgbench.config import ConfigError
from vgbench import grid, paths
from vgbench.provenance import atomic_write
from vgbench.scores import outcome


def score(summary: dict) -> float:
    """Validation score of one run (higher is better; failures score as the trivial predictor)."""
    row = {"status": summary["status"], "baseline_metric": summary["baseline"]["metric"],
           "baseline_value": summary["baseline"]["value"],
           **{f"final.{k}": v for k, v in (summary.get("final") or {}).items()}}
    return float(outcome(pd.DataFrame([row]), "val")["score"].iloc[0])


def select(profile: grid.Profile, results: str | Path) -> pd.DataFrame:
    rows, missing, bad = [], [], []
    for spec in grid.tune_specs(profile):
        d = paths.run_dir(spec.run_id, results)
        if not paths.is_complete(d):
            missing.append(spec.run_id)
            continue
        try:
            s = paths.read_summary(d)
            rows.append({"tune_key": spec.tune_key, "study": spec.study, "variant": spec.variant,
                         "lr": spec.cfg.lr, "seed": spec.cfg.seed, "score": score(s),
                         "diverged": s["status"] == "diverged", "run_id": spec.run_id})
        except paths.UNREADABLE as e:
            bad.append((d, f"{type(e).__name__}: {e}"))
    if missing:
        raise FileNotFoundError(f"{len(missing)} tuning runs missing, e.g. {missing[:3]}")
    if bad:
        raise paths.corrupt_runs_error(bad)
    cols = ["tune_key", "study", "variant", "lr", "score_mean", "n", "n_diverged", "all_diverged", "selected"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    g = df.groupby(["tune_key", "study", "variant", "lr"], as_index=False).agg(
        score_mean=("score", "mean"), n=("score", "size"), n_diverged=("diverged", "sum"))
    g["all_diverged"] = (g["n_diverged"] == g["n"]).groupby(g["tune_key"]).transform("all")
    g["selected"] = False
    for key, sub in g.groupby("tune_key"):
        if sub["all_diverged"].iloc[0]:
            best = sub["lr"].idxmin()
        else:
            best = sub.sort_values(["score_mean", "lr"], ascending=[False, True]).index[0]
        g.loc[best, "selected"] = True
    return g[cols]


def read_selected(path: str | Path) -> dict[str, float]:
    """tune_key -> selected lr. An unreadable table (a crash mid-write of an older version, a hand
    edit) is a ConfigError saying how to rebuild it from the tuning runs, which are kept."""
    try:
        df = pd.read_csv(path)
        sel = df[df["selected"].map({True: True, False: False, "True": True, "False": False}).astype(bool)]
        lrs = pd.to_numeric(sel["lr"], errors="raise").astype(float)
        if df["selected"].isna().any() or not (lrs > 0).all() or sel["tune_key"].duplicated().any():
            raise ValueError("a selected lr is missing, not > 0, or chosen twice for one condition")
    except paths.UNREADABLE as e:
        raise ConfigError(f"{path} cannot be read ({type(e).__name__}: {e}); delete it and run the same command "
                          "again: the select_lr stage rebuilds it from the tuning runs, none of which is retrained"
                          ) from None
    return dict(zip(sel["tune_key"], lrs))


def main(args) -> int:
    profile = grid.load_profile(args.profile)
    df = select(profile, args.results)
    out = paths.selected_lr(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        df.to_csv(tmp, index=False)
    sel = df[df["selected"].astype(bool)]
    print(f"select-lr: {len(sel)} conditions tuned, {int(sel['all_diverged'].sum())} diverged at every lr -> {out}")
    return 0
