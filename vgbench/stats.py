"""Statistics: every number with its uncertainty, every claim with its test.

Reads results/aggregate/{runs,curves}.parquet (final runs) and writes results/stats/:
  conditions.csv   per condition: n, divergence rate, mean / std / 95 % bootstrap CI of the
                   primary metric, log10 gradient ratios, final train loss
  comparisons.csv  each variant vs its study's baseline at equal axis values: Welch's t,
                   Mann-Whitney U, Hedges' g, Cliff's delta, bootstrap CI of the difference,
                   Holm-Bonferroni over the family (quantity = score: every such comparison in
                   the profile; quantity = log10_ratio_init: likewise, a separate family)
  friedman.csv     per study: Friedman test over variants, blocks = (axis values, seed rank),
                   and the Nemenyi critical difference; ranks.csv: mean rank per variant
  claims.csv       the literature's claims, each with its experiment, effect, CI, Holm-corrected
                   p over the claims family and a verdict computed from the data
A first/last gradient ratio of exactly 0 (float32 underflow) is censored at log10 = -44.85.
Diverged runs are failures, never dropped: their metric becomes the trivial predictor's
(chance accuracy, or the constant / memoryless loss). `score` is accuracy, or minus the
loss, so higher is better everywhere. No plotting here (figures never compute statistics).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from vgbench.scores import outcome
from vgbench import paths

ALPHA = 0.05
N_BOOT = 2000
FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)   # 1.4e-45


# --- primitives (tested against hand-computed fixtures and scipy) ------------------------

def bootstrap_ci(x, stat=np.mean, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of stat(x); (nan, nan) for n < 2, a point for constant x."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return (math.nan, math.nan)
    if np.ptp(x) == 0:
        return (float(x[0]), float(x[0]))
    r = st.bootstrap((x,), stat, confidence_level=level, n_resamples=N_BOOT, method="percentile",
                     rng=np.random.default_rng(0))
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def bootstrap_diff_ci(x, y, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(x) - mean(y), independent samples."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(y) < 2:
        return (math.nan, math.nan)
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        d = float(x[0] - y[0])
        return (d, d)
    r = st.bootstrap((x, y), lambda a, b, axis=-1: a.mean(axis) - b.mean(axis), confidence_level=level,
                     n_resamples=N_BOOT, method="percentile", rng=np.random.default_rng(0), vectorized=True)
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def hedges_g(x, y) -> float:
    """Standardised mean difference (x - y) / pooled sd, small-sample corrected."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n1, n2 = len(x), len(y)
    if n1 < 2 or n2 < 2:
        return math.nan
    sp = math.sqrt(((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2))
    d = x.mean() - y.mean()
    if sp == 0:
        return 0.0 if d == 0 else math.copysign(math.inf, d)
    return d / sp * (1 - 3 / (4 * (n1 + n2) - 9))


def cliffs_delta(x, y) -> float:
    """P(X > Y) - P(X < Y) over all pairs."""
    x, y = np.asarray(x, float)[:, None], np.asarray(y, float)[None, :]
    return float(((x > y).sum() - (x < y).sum()) / (x.size * y.size))


def welch(x, y) -> tuple[float, float]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(y) < 2:
        return math.nan, math.nan
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return (0.0, 1.0) if x[0] == y[0] else (math.copysign(math.inf, x[0] - y[0]), 0.0)
    r = st.ttest_ind(x, y, equal_var=False)
    return float(r.statistic), float(r.pvalue)


def mann_whitney(x, y) -> tuple[float, float]:
    if len(x) < 1 or len(y) < 1:
        return math.nan, math.nan
    r = st.mannwhitneyu(x, y, alternative="two-sided")
    return float(r.statistic), float(r.pvalue)


def holm(p) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaNs kept out of the family)."""
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out


def nemenyi_cd(k: int, n: int, alpha: float = ALPHA) -> float:
    """Critical difference of mean ranks (Demsar 2006): q_alpha sqrt(k(k+1) / (6N)), with
    q_alpha the studentized range quantile / sqrt(2)."""
    q = st.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


# --- from runs to per-run outcomes ---------------------------------------------------------

def outcomes(runs: pd.DataFrame) -> pd.DataFrame:
    """Final runs with `metric`, `value` (failures -> trivial predictor), `score`, log10 ratios."""
    r = runs[runs["stage"] == "final"].copy()
    r[["metric", "value", "score", "failed"]] = outcome(r, "test")
    for k in ("grad_ratio_init", "grad_ratio_final"):
        v = pd.to_numeric(r.get(k), errors="coerce").astype(float)
        # a ratio of exactly 0 means the first layer's gradient underflowed float32: censor it
        # at the smallest float32 (an upper bound on the true, even smaller, ratio)
        r[f"log10_{k[len('grad_'):]}"] = np.log10(v.where(v > 0, np.where(v == 0, FLOAT32_TINY, np.nan)))
    r["labels_key"] = r["labels"].astype(str)
    return r


def condition_table(o: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (study, variant, labels), g in o.groupby(["study", "variant", "labels_key"], sort=True):
        row = {"study": study, "variant": variant, "labels": labels, "condition_id": g["condition_id"].iloc[0],
               "task": g["task"].iloc[0], "metric": g["metric"].iloc[0], "n": len(g),
               "n_diverged": int((g["status"] == "diverged").sum()),
               "divergence_rate": float((g["status"] == "diverged").mean()),
               "baseline_value": float(g["baseline_value"].iloc[0])}
        for q in ("value", "log10_ratio_init", "log10_ratio_final", "final.train/loss", "max_grad_norm"):
            if q not in g:
                continue
            x = pd.to_numeric(g[q], errors="coerce").to_numpy(float)
            x = x[np.isfinite(x)]
            lo, hi = bootstrap_ci(x)
            row.update({f"{q}_mean": x.mean() if len(x) else math.nan,
                        f"{q}_std": x.std(ddof=1) if len(x) > 1 else math.nan,
                        f"{q}_ci_low": lo, f"{q}_ci_high": hi, f"{q}_n": len(x)})
        rows.append(row)
    return pd.DataFrame(rows)


def compare(x, y) -> dict:
    """Variant sample x vs baseline sample y (higher is better)."""
    t, pt = welch(x, y)
    u, pu = mann_whitney(x, y)
    lo, hi = bootstrap_diff_ci(x, y)
    return {"n": len(x), "n_base": len(y), "mean": float(np.mean(x)), "mean_base": float(np.mean(y)),
            "diff": float(np.mean(x) - np.mean(y)), "diff_ci_low": lo, "diff_ci_high": hi,
            "welch_t": t, "p_welch": pt, "mwu_u": u, "p_mwu": pu,
            "hedges_g": hedges_g(x, y), "cliffs_delta": cliffs_delta(x, y)}


def comparisons(o: pd.DataFrame, baselines: dict[str, dict]) -> pd.DataFrame:
    """Each variant vs its baseline at equal axis values, for score and log10_ratio_init."""
    rows = []
    for study, pairs in baselines.items():
        s = o[o["study"] == study]
        for variant, base in pairs.items():
            for labels, g in s[s["variant"] == variant].groupby("labels_key"):
                b = s[(s["variant"] == base) & (s["labels_key"] == labels)]
                if b.empty:
                    continue
                for q in ("score", "log10_ratio_init"):
                    x, y = g[q].dropna().to_numpy(float), b[q].dropna().to_numpy(float)
                    if len(x) == 0 or len(y) == 0:
                        continue
                    rows.append({"study": study, "variant": variant, "baseline": base, "labels": labels,
                                 "quantity": q, "metric": g["metric"].iloc[0] if q == "score" else q,
                                 "div_rate": float(g["failed"].mean()), "div_rate_base": float(b["failed"].mean()),
                                 **compare(x, y)})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["p_holm"] = np.nan
    for q, idx in df.groupby("quantity").groups.items():
        df.loc[idx, "p_holm"] = holm(df.loc[idx, "p_welch"])
    df["family"] = df["quantity"].map({"score": "all variant-vs-baseline comparisons of the primary metric",
                                       "log10_ratio_init": "all variant-vs-baseline comparisons of log10 grad ratio at init"})
    df["significant"] = df["p_holm"] < ALPHA
    return df


def friedman(o: pd.DataFrame, studies: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Friedman over a study's variants; blocks = (axis values, seed rank within condition)."""
    fr, rk = [], []
    for study in studies:
        s = o[o["study"] == study].copy()
        if s["variant"].nunique() < 3:
            continue
        s["rep"] = s.groupby(["variant", "labels_key"])["seed"].rank(method="first")
        wide = s.pivot_table(index=["labels_key", "rep"], columns="variant", values="score").dropna()
        if len(wide) < 2:
            continue
        stat, p = st.friedmanchisquare(*[wide[c].to_numpy() for c in wide.columns])
        ranks = wide.rank(axis=1, ascending=False).mean()
        k, n = wide.shape[1], wide.shape[0]
        fr.append({"study": study, "k": k, "n_blocks": n, "chi2": float(stat), "p": float(p),
                   "cd": nemenyi_cd(k, n), "blocks": "axis values x seed rank"})
        for v, r in ranks.items():
            rk.append({"study": study, "variant": v, "mean_rank": float(r)})
    return pd.DataFrame(fr), pd.DataFrame(rk)


# --- claims -----------------------------------------------------------------------------

def _labels(d: dict) -> str:
    return json.dumps(d, default=str)


def _sel(o, study, variant=None, **labels):
    s = o[o["study"] == study]
    if variant is not None:
        s = s[s["variant"] == variant]
    for k, v in labels.items():
        s = s[s["labels_key"].map(lambda j: json.loads(j).get(k)) == v]
    return s


def _label_range(o, study, key):
    """(smallest, largest) value of axis `key` in `study`, (None, None) if it has none."""
    vals = [json.loads(j).get(key) for j in o.loc[o["study"] == study, "labels_key"].unique()]
    vals = [v for v in vals if v is not None]
    return (min(vals), max(vals)) if vals else (None, None)


def dead_fraction(curves: pd.DataFrame) -> pd.Series:
    """run_id -> mean over layers of the dead fraction at the last recorded step."""
    d = curves[curves["kind"] == "dead"]
    if d.empty:
        return pd.Series(dtype=float)
    last = d.groupby("run_id", observed=True)["step"].transform("max")
    return d[d["step"] == last].groupby("run_id", observed=True)["value"].mean()


def claims(o: pd.DataFrame, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each claim -> (experiment, effect in the claimed direction, CI, p, verdict)."""
    rows = []

    def add(claim, experiment, x, y, quantity="score", direction=+1, kind="superiority", margin=None):
        x, y = np.asarray(x, float), np.asarray(y, float)
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        if len(x) < 2 or (kind != "one_sample" and len(y) < 2):
            rows.append({"claim": claim, "experiment": experiment, "quantity": quantity, "n": len(x),
                         "n_base": len(y), "verdict": "inconclusive", "note": "too few runs"})
            return
        if kind == "rates":
            # x, y: 1 = diverged; effect = fewer divergences than the baseline
            table = [[int(x.sum()), len(x) - int(x.sum())], [int(y.sum()), len(y) - int(y.sum())]]
            p = float(st.fisher_exact(table).pvalue)
            lo_, hi_ = bootstrap_diff_ci(y, x)
            rows.append({"claim": claim, "experiment": experiment, "quantity": quantity, "n": len(x),
                         "n_base": len(y), "effect": float(y.mean() - x.mean()), "ci_low": lo_, "ci_high": hi_,
                         "hedges_g": math.nan, "p": p, "kind": kind, "margin": margin,
                         # nothing to prevent: the experiment cannot test the claim
                         "note": "baseline never diverged" if y.sum() == 0 else None})
            return
        if kind == "one_sample":
            # identical values (e.g. all censored at the float32 floor) are a certain effect
            p = float(st.ttest_1samp(x, 0.0).pvalue) if np.ptp(x) > 0 else float(x.mean() == 0)
            eff, (lo, hi) = float(direction * x.mean()), bootstrap_ci(direction * x)
            g = math.nan
        else:
            c = compare(x, y)
            eff, lo, hi, p = direction * c["diff"], direction * c["diff_ci_low"], direction * c["diff_ci_high"], c["p_welch"]
            lo, hi = min(lo, hi), max(lo, hi)
            g = direction * c["hedges_g"]
        rows.append({"claim": claim, "experiment": experiment, "quantity": quantity, "n": len(x),
                     "n_base": len(y), "effect": eff, "ci_low": lo, "ci_high": hi, "hedges_g": g,
                     "p": p, "kind": kind, "margin": margin})

    mit, deep = "mlp_mitigations", _label_range(o, "mlp_mitigations", "depth")[1]

    def mlp(v):
        return _sel(o, mit, v, depth=deep)

    # sigmoid nets vanish: log10 first/last gradient ratio at init below 0
    init = o[o["study"] == "init_depth"]
    if not init.empty:
        sig = _sel(o, "init_depth", None, activation="sigmoid", init="default")
        add("Sigmoid nets' gradients vanish with depth (sigma' <= 1/4)",
            "init_depth: sigmoid, default init, log10 ||dW_1|| / ||dW_L|| at step 0",
            sig["log10_ratio_init"], [], quantity="log10_ratio_init", direction=-1, kind="one_sample")
    if "cnn_resnet" in set(o["study"]):
        dmin, dmax = _label_range(o, "cnn_resnet", "depth")
        add("CNNs suffer too: a deeper plain CNN does worse",
            f"cnn_resnet: plain cnn, depth {dmax} vs {dmin}",
            _sel(o, "cnn_resnet", "cnn", depth=dmax)["score"], _sel(o, "cnn_resnet", "cnn", depth=dmin)["score"],
            direction=-1)
    if mit in set(o["study"]):
        pairs = [("ReLU alleviates vanishing gradients", "relu", "baseline"),
                 ("He init matters even with ReLU", "relu_he", "relu"),
                 ("Batch norm helps", "batch_norm", "baseline"),
                 ("Residual connections help", "residual", "baseline"),
                 ("Greedy layer-wise pretraining helps", "greedy_pretrain", "baseline"),
                 ("sigma'+c helps sigmoid nets (c = 0.1)", "sigmoid_c01", "baseline")]
        for claim, v, b in pairs:
            add(claim, f"{mit}: {v} vs {b}, depth {deep}", mlp(v)["score"], mlp(b)["score"])
        add("Auxiliary losses strengthen early-layer gradients",
            f"{mit}: aux_loss vs baseline, log10 grad ratio at init, depth {deep}",
            mlp("aux_loss")["log10_ratio_init"], mlp("baseline")["log10_ratio_init"], quantity="log10_ratio_init")
        if curves is not None:
            dead = dead_fraction(curves)
            for v in ("leaky_relu", "elu"):
                add(f"{'Leaky ReLU' if v == 'leaky_relu' else 'ELU'} avoids dead units",
                    f"{mit}: {v} vs relu, final fraction of units <= 0 on a whole batch, depth {deep}",
                    mlp(v)["run_id"].map(dead), mlp("relu")["run_id"].map(dead), quantity="dead_fraction",
                    direction=-1)
    if "cnn_resnet" in set(o["study"]):
        dmax = _label_range(o, "cnn_resnet", "depth")[1]
        add("Residual connections help (conv)", f"cnn_resnet: resnet vs cnn, depth {dmax}",
            _sel(o, "cnn_resnet", "resnet", depth=dmax)["score"], _sel(o, "cnn_resnet", "cnn", depth=dmax)["score"])
    if "exploding" in set(o["study"]):
        # "prevents explosion" / "curbs blow-up" are about divergence: Fisher's exact test on
        # the diverged counts (effect: baseline's divergence rate minus the variant's)
        for v, b, claim in [("high_lr_clip", "high_lr", "Clipping prevents explosion (high lr)"),
                            ("large_init_clip", "large_init", "Clipping prevents explosion (large init)"),
                            ("high_lr_decay", "high_lr", "Weight decay curbs ReLU blow-up (high lr)"),
                            ("large_init_decay", "large_init", "Weight decay curbs ReLU blow-up (large init)")]:
            x, y = _sel(o, "exploding", v), _sel(o, "exploding", b)
            if len(x) and len(y):
                add(claim, f"exploding: {v} vs {b}, fraction of seeds diverged",
                    (x["status"] == "diverged").astype(float), (y["status"] == "diverged").astype(float),
                    quantity="divergence_rate", kind="rates")
    if "rnn_tasks" in set(o["study"]):
        T = _label_range(o, "rnn_tasks", "task_args.seq_len")[1]
        for task in sorted({json.loads(j).get("task") for j in _sel(o, "rnn_tasks")["labels_key"]}):
            x = _sel(o, "rnn_tasks", "lstm", task=task, **{"task_args.seq_len": T})["score"]
            y = _sel(o, "rnn_tasks", "rnn", task=task, **{"task_args.seq_len": T})["score"]
            add("LSTM beats a vanilla RNN on long sequences", f"rnn_tasks: lstm vs rnn, {task}, T = {T}", x, y)
    if "step_budget" in set(o["study"]):
        sb = o[o["study"] == "step_budget"]
        lab = [json.loads(j) for j in sb["labels_key"].unique()]
        lrs, steps = sorted({d["lr"] for d in lab}), sorted({d["steps"] for d in lab})
        if len(lrs) >= 2 and len(steps) >= 2:
            small, big = lrs[0], lrs[-1]
            # equal lr x steps: the small lr gets (big/small) times the steps, capped by the grid
            s_small = max(steps)
            s_big = min(steps, key=lambda s: abs(s * big - s_small * small))
            add("More steps at a small lr compensate (equivalence within 2 points)",
                f"step_budget: lr {small} x {s_small} steps vs lr {big} x {s_big} steps",
                _sel(o, "step_budget", None, lr=small, steps=s_small)["score"],
                _sel(o, "step_budget", None, lr=big, steps=s_big)["score"], kind="equivalence", margin=0.02)

    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["p_holm"] = holm(df.get("p", pd.Series(np.nan, index=df.index)))
    df["family"] = "all claims in this table"
    df["verdict"] = [verdict(r) for r in df.to_dict("records")]
    return note_too_few_seeds(df)


def note_too_few_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """A rate claim whose every baseline seed diverged and no variant seed did shows the
    strongest result its seed count allows; if it is still inconclusive after the correction,
    the note says so: inconclusive for lack of seeds, not for lack of an effect."""
    if "kind" not in df or "note" not in df:
        return df
    df["note"] = df["note"].astype(object)  # all-NaN (float) when no claim has a note yet
    extreme = (df["kind"] == "rates") & (df["effect"] == 1.0) & (df["verdict"] == "inconclusive") & df["note"].isna()
    for i in df.index[extreme]:
        df.at[i, "note"] = (f"{int(df.at[i, 'n_base'])}/{int(df.at[i, 'n_base'])} vs 0/{int(df.at[i, 'n'])}, "
                            f"the most extreme outcome: too few seeds for {len(df)} claims")
    return df


def verdict(r: dict) -> str:
    """supported: significant (Holm) in the claimed direction -- or, for an equivalence claim,
    the CI inside +-margin; not supported: significant the other way, or the CI rules out
    any benefit (equivalence: CI entirely outside the margin); otherwise inconclusive."""
    if isinstance(r.get("note"), str) or not np.isfinite(r.get("p_holm", np.nan)):
        return "inconclusive"
    lo, hi, p = r["ci_low"], r["ci_high"], r["p_holm"]
    if r.get("kind") == "equivalence":
        m = r["margin"]
        if -m <= lo and hi <= m:
            return "supported"
        if hi < -m or lo > m or (p < ALPHA and r["effect"] < 0):
            return "not supported"
        return "inconclusive"
    if p < ALPHA and r["effect"] > 0:
        return "supported"
    if (p < ALPHA and r["effect"] < 0) or hi <= 0:
        return "not supported"
    return "inconclusive"


def main(args) -> int:
    from vgbench import grid
    prof = grid.load_profile(args.profile)
    res = Path(args.results)
    runs = pd.read_parquet(paths.aggregate("runs", res))
    curves = pd.read_parquet(paths.aggregate("curves", res))
    o = outcomes(runs)
    out = paths.stats("conditions", res).parent
    out.mkdir(parents=True, exist_ok=True)
    cond = condition_table(o)
    comp = comparisons(o, {n: s.baselines for n, s in prof.studies.items() if s.baselines})
    fr, rk = friedman(o, [n for n, s in prof.studies.items() if s.baselines])
    cl = claims(o, curves)
    for name, df in [("conditions", cond), ("comparisons", comp), ("friedman", fr), ("ranks", rk), ("claims", cl)]:
        df.to_csv(paths.stats(name, res), index=False)
    n_sig = int(comp["significant"].sum()) if len(comp) else 0
    print(f"stats: {len(cond)} conditions, {len(comp)} comparisons ({n_sig} significant after Holm), "
          f"{len(cl)} claims -> {out}")
    if len(cl):
        print(cl[["claim", "experiment", "verdict"]].to_string(index=False))
    return 0
