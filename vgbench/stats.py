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
  claims.csv       the profile's claims (vgbench.claims), each with its experiment, effect, CI,
                   Holm-corrected p within its family and a verdict computed from the data
A first/last gradient ratio of exactly 0 (float32 underflow) is censored at log10 = -44.85;
conditions.csv (`<ratio>_censored`) and comparisons.csv (`censored`, `censored_base`) count such
runs. A censored value is not a bound (claims.CENSORED): the true ratio can be a few decades larger.
Diverged runs are failures, never dropped: their metric becomes the trivial predictor's
(chance accuracy, or the constant / memoryless loss). `score` is accuracy, or minus the
loss, so higher is better everywhere. No plotting here (figures never compute statistics).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from vgbench.scores import outcome
from vgbench import paths
from vgbench.provenance import atomic_write

ALPHA = 0.05
N_BOOT = 2000
FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)   # 1.4e-45


def censored(log10_ratios) -> int:
    """How many log10 first/last ratios sit at the censoring value outcomes() gives an underflowed
    (zero) ratio: log10 of float32's smallest value."""
    return int((np.asarray(log10_ratios, float) <= np.log10(FLOAT32_TINY) + 1e-9).sum())


def log_rows(df: pd.DataFrame, by: list, x: str, col: str = "value") -> pd.DataFrame:
    """The rows a mean of log10 takes (a line on a log axis, the theory table's measured profile):
    at each x of each group `by`, only where every run recorded there has a positive finite value.
    A gradient that underflowed float32 is recorded as 0; a mean over the runs left would be biased
    upward and jump. (Seaborn aggregates in log10 -- a geometric mean and its CI -- when the axis
    is log before it draws.)"""
    ok = np.isfinite(df[col].astype(float)) & (df[col] > 0)
    return df[df.assign(_ok=ok).groupby([*by, x], observed=True)["_ok"].transform("all")]


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
    with warnings.catch_warnings():
        # one constant sample (every seed at chance, 0.089) has variance exactly 0, and scipy's
        # cancellation check calls that "precision loss ... unreliable": a false alarm in stats.log
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
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
        # at the smallest float32 (not a bound on the true ratio: see claims.CENSORED)
        r[f"log10_{k[len('grad_'):]}"] = np.log10(v.where(v > 0, np.where(v == 0, FLOAT32_TINY, np.nan)))
    # the ratio at init through a float64 copy where float32's first-layer gradient was tiny (runs of
    # 2026-12-04 on; an exact 0 there is a true zero: no ratio); else float32's, except where that
    # is censored (older runs, trained before the float64 copy existed): no value, never a floor
    f64 = pd.to_numeric(r.get("grad_ratio_init_f64", pd.Series(np.nan, index=r.index)), errors="coerce").astype(float)
    own = r["log10_ratio_init"].where(r["log10_ratio_init"] > np.log10(FLOAT32_TINY))
    r["log10_ratio_init_f64"] = np.log10(f64.where(f64 > 0)).where(f64.notna(), own)
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
            if q.startswith("log10_ratio"):
                row[f"{q}_censored"] = censored(x)
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
                                 "censored": censored(x) if q != "score" else 0,
                                 "censored_base": censored(y) if q != "score" else 0,
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


def main(args) -> int:
    from vgbench import grid
    prof = grid.load_profile(args.profile)
    res = paths.require(args.results, "aggregate stage", profile=prof)
    runs = pd.read_parquet(paths.aggregate("runs", res))
    curves = pd.read_parquet(paths.aggregate("curves", res))
    o = outcomes(runs)
    out = paths.stats("conditions", res).parent
    out.mkdir(parents=True, exist_ok=True)
    cond = condition_table(o)
    comp = comparisons(o, {n: s.baselines for n, s in prof.studies.items() if s.baselines})
    fr, rk = friedman(o, [n for n, s in prof.studies.items() if s.baselines])
    from vgbench.claims import evaluate
    cl = evaluate(o, curves, prof.claims)
    for name, df in [("conditions", cond), ("comparisons", comp), ("friedman", fr), ("ranks", rk), ("claims", cl)]:
        with atomic_write(paths.stats(name, res)) as tmp:
            df.to_csv(tmp, index=False)
    n_sig = int(comp["significant"].sum()) if len(comp) else 0
    print(f"stats: {len(cond)} conditions, {len(comp)} comparisons ({n_sig} significant after Holm), "
          f"{len(cl)} claims -> {out}")
    if len(cl):
        print(cl[["claim", "experiment", "verdict"]].to_string(index=False))
    return 0
