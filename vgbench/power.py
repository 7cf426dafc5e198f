"""`vgbench power PROFILE`: can each pre-registered claim be supported at all with its seeds?

Run before the final runs. Some of the evaluator's tests are discrete, so their p-value has a
floor that no effect, however clear, can go below:
  - rates (Fisher's exact test, two-sided): every control seed diverged and no treatment seed
    did gives p = 1 / C(n + n_c, n) per tail; 5 v 5: 0.0079, 8 v 8: 1.6e-4;
  - paired outcomes that move in whole grid steps (`trainable`): when every pair differs by the
    same amount the t-test is undefined and the evaluator uses the exact sign test,
    p = 2 * 0.5^n; 5 pairs: 0.0625 -- the clearest possible result is not significant.
  - a log10 gradient ratio (claims.CENSORED) is continuous, but where every run's first-layer
    gradient underflows float32 all values sit at one floor and the evaluator uses the same exact
    sign test: 3 seeds, p = 0.25 -- the table says what that floor is.
The floor is the evaluator's own test (claims.test) run on that clearest result, so it follows
whatever test the evaluator picks.
Holm within a family of m claims rejects the smallest p first at alpha / m: a claim whose floor is
below alpha / m can be supported whatever the rest of its family does; below alpha only if its
family's other claims are rejected before it; at or above alpha never. Continuous outcomes
(t-tests) and equivalence claims (CI inside the margin) have no floor; the pilot's effect and
spread size them (see the profiles' headers).

`vgbench power PROFILE --pilot RESULTS` sizes them: each claim is evaluated on a pilot's runs (the
profile's studies, variants and axis values run on other seeds, e.g. an earlier round's results),
and the table gives the pilot's effect and spread and the seeds that decide the claim with
probability POWER at alpha / m -- once at the pilot's standard deviation and once at its upper
SD_LEVEL confidence limit, sd * sqrt((k - 1) / chi2_{1 - SD_LEVEL}(k - 1)) from k pilot units. A
standard deviation from 5 seeds is itself uncertain (x 1.56 at that limit): the replication profile's
step-budget claim, sized from 5 seeds' sd of 0.012, met 0.024 in 30 and stayed inconclusive.
A third count, n (boot), simulates the same: the pilot's units resampled with replacement, each
draw put to the evaluator's t-test (BOOT_DRAWS draws per n). It keeps the pilot's shape where the
normal approximation keeps only a mean and an sd: a difference that is 0 for most seeds and large
for a few (warm-up failing in 2 of 20 transformer pilots) is decided with fewer seeds than a
normal one of that sd (53 vs 76 there, as the ninth replication round's hand simulation found).
It cannot invent outcomes the pilot never showed: with few pilot units, read it beside the others.
"Decided" is what the evaluator decides: a paired or one-sample t-test significant in either
direction (supported or not supported), a Welch test likewise, an equivalence CI inside or
outside the margin, Fisher's test on rates significant.
"""
from __future__ import annotations

import math

from vgbench.claims import ALPHA, CENSORED, Claim


def units(claim: Claim, study, selector: dict | None) -> int:
    """Independent units of one arm: seeds x the values of the axes its selector leaves free
    (an outcome along an axis is one value per seed and remaining free axes)."""
    if selector is None:
        return 0
    n = len(study.seeds)
    for axis, vals in study.axes.items():
        if axis not in selector and axis != claim.along:
            n *= len(vals)
    return n


NEVER = "can never be supported"
DISCRETE = ("diverged", "trainable")  # outcomes whose clearest result is a fixed step, not an ever smaller p


def floor(claim: Claim, n: int, n_c: int) -> tuple[float | None, str]:
    """The p of the evaluator's own test (claims.test) on the clearest result a discrete outcome can
    give -- every treatment unit one step better than every control unit -- with n and n_c units
    (None: no floor) and the test's name."""
    import pandas as pd
    from vgbench.claims import test
    if claim.test == "equivalence":
        return None, "equivalence (CI inside the margin)"
    # a censored outcome hits a floor where every unit sits at the censoring value: one-sample claims
    # (two arms both at it differ by 0 -- no evidence either way, not a floor)
    if claim.outcome not in DISCRETE and not (claim.outcome in CENSORED and claim.control is None):
        return None, "t-test"
    good = 1.0 if claim.direction == "greater" else 0.0
    # without a control the clearest result is every unit one step from 0 in the claimed direction
    x = pd.Series(good if claim.control is not None else claim.sign * 1.0, index=range(n))
    y = pd.Series(1.0 - good, index=range(n_c)) if claim.control is not None else pd.Series(dtype=float)
    r = test(claim, x, y)
    name = ("Fisher" if claim.test == "rates" else "sign test (every pair alike)" if r["paired"]
            else "sign test (every seed alike)" if claim.control is None else "Welch")
    if claim.outcome in CENSORED:
        name = f"where every run underflows float32: {name}"
    return r["p"], f"{name}, {n} v {n_c}"


def table(prof):
    """One row per claim: its family size, test, p floor, the Holm-adjusted floor and whether the
    claim can be supported at its clearest outcome."""
    import pandas as pd
    fam = pd.Series([c.family for c in prof.claims]).value_counts().to_dict()
    rows = []
    for c in prof.claims:
        study = prof.studies[c.study]
        n, n_c = units(c, study, c.treatment), units(c, study, c.control)
        p, test = floor(c, n, n_c)
        m = fam[c.family]
        if p is None:
            verdict = "no floor"
        elif p < ALPHA / m:
            verdict = "can be supported"
        elif p < ALPHA:
            verdict = "only if the rest of its family is rejected first"
        else:
            verdict = NEVER if c.outcome not in CENSORED else "cannot be supported where every run underflows"
        rows.append({"claim": c.id, "family": c.family, "m": m, "test": test, "p_floor": p,
                     "holm_floor": None if p is None else min(1.0, p * m), "verdict": verdict})
    return pd.DataFrame(rows)


def warning(prof, profile: str) -> str | None:
    """One line naming the claims whose test can never reach alpha with their seeds (None: none)."""
    t = table(prof)
    never = [] if t.empty else list(t.loc[t["verdict"] == NEVER, "claim"])
    if not never:
        return None
    return (f"vgbench: {len(never)} claim(s) can never be supported with their seeds, however clear the "
            f"result: {', '.join(never)} (add seeds; see `vgbench power {profile}`)")


POWER = 0.8          # the probability of a decision the sizing asks for
SD_LEVEL = 0.8       # the confidence level of the pilot sd's upper limit
MAX_SEEDS = 200      # the sizing's search stops here ("> 200")


def _t_power(d: float, n: int, alpha: float, two_sample: bool = False) -> float:
    """Probability that a two-sided t-test at alpha is significant (either direction) at
    standardised effect d: one-sample/paired with n units, or two samples of n each."""
    from scipy import stats as st
    df = 2 * n - 2 if two_sample else n - 1
    if df < 1:
        return 0.0
    ncp = d * math.sqrt(n / 2 if two_sample else n)
    t = st.t.ppf(1 - alpha / 2, df)
    # scipy's noncentral t returns NaN for some far tails (e.g. df 49, ncp 17.7): those are ~0
    return float(sum(0.0 if math.isnan(v) else v for v in (st.nct.sf(t, df, ncp), st.nct.cdf(-t, df, ncp))))


def _equivalence_power(mean: float, sd: float, n: int, margin: float) -> float:
    """Probability that the 95 % t interval of a mean of n normal units lies entirely inside or
    entirely outside +-margin. The estimate and the sample sd are independent, so this is the
    probability for the estimate given the interval's half-width, averaged over the sample sd's
    scaled chi distribution (400 quantiles)."""
    import numpy as np
    from scipy import stats as st
    if n < 2:
        return 0.0
    se = sd / math.sqrt(n)
    if se == 0:
        return 0.0 if abs(mean) == margin else 1.0
    k = 400
    s = sd * np.sqrt(st.chi2.ppf((np.arange(k) + 0.5) / k, n - 1) / (n - 1))
    hw = st.t.ppf(0.975, n - 1) * s / math.sqrt(n)
    inside = np.clip(st.norm.cdf((margin - hw - mean) / se) - st.norm.cdf((-margin + hw - mean) / se), 0, None)
    outside = st.norm.sf((margin + hw - mean) / se) + st.norm.cdf((-margin - hw - mean) / se)
    return float(np.mean(inside + outside))


def _fisher_significant(n: int, alpha: float):
    """(n+1) x (n+1) booleans: whether Fisher's two-sided test of k1/n vs k0/n is significant at
    alpha. Given the k1 + k0 = K diverged runs, k1 is hypergeometric; the p-value sums the
    probabilities of the tables no more likely than the one seen (scipy's definition, with its
    relative tolerance of 1e-7), one K at a time instead of one scipy call per table."""
    import numpy as np
    from scipy import stats as st
    sig = np.zeros((n + 1, n + 1), dtype=bool)
    for K in range(2 * n + 1):
        k1 = np.arange(max(0, K - n), min(n, K) + 1)
        pmf = st.hypergeom.pmf(k1, 2 * n, n, K)
        p = (pmf[None, :] * (pmf[None, :] <= pmf[:, None] * (1 + 1e-7))).sum(1)
        sig[k1, K - k1] = p < alpha
    return sig


def _rates_power(p1: float, p0: float, n: int, alpha: float) -> float:
    """Exact probability that Fisher's test (two-sided) of k1/n vs k0/n is significant at alpha."""
    from scipy import stats as st
    b1, b0 = st.binom.pmf(range(n + 1), n, p1), st.binom.pmf(range(n + 1), n, p0)
    return float((b1[:, None] * b0[None, :] * _fisher_significant(n, alpha)).sum())


BOOT_DRAWS = 2000    # resamples per seed count in the bootstrap sizing


def _boot_power(x, y, n: int, alpha: float, paired: bool) -> float:
    """The probability that the evaluator decides a t-test claim (p < alpha, either direction) with
    n units, simulated by resampling the pilot's units with replacement (BOOT_DRAWS times; seeded
    by n, so the sizing is reproducible). Paired or one-sample: x holds the differences in the
    claimed direction (y None); unpaired: x and y are the arms, n runs each. It keeps the shape of
    the pilot's distribution -- a difference that is 0 for most seeds and large for a few (nets
    that train or do not) -- where the normal approximation sees only a mean and an sd; and it
    applies the evaluator's own special case (claims.test): a paired draw whose units are all alike
    gets the exact sign test."""
    import warnings
    import numpy as np
    from scipy import stats as st
    rng = np.random.default_rng(n)
    if paired:
        d = rng.choice(np.asarray(x, float), size=(BOOT_DRAWS, n))
        alike = d.max(1) == d.min(1)
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = st.ttest_1samp(d, 0.0, axis=1).pvalue
        p[alike] = np.where(d[alike, 0] == 0, 1.0, 2 * 0.5 ** n)
    else:
        a = rng.choice(np.asarray(x, float), size=(BOOT_DRAWS, n))
        b = rng.choice(np.asarray(y, float), size=(BOOT_DRAWS, n))
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = st.ttest_ind(a, b, axis=1, equal_var=False).pvalue   # two constant arms: 0 or NaN, as stats.welch
    return float(np.mean(np.nan_to_num(p, nan=1.0) < alpha))


def _smallest(power_of, target: float = POWER) -> int | None:
    """The smallest n in 2..MAX_SEEDS with power_of(n) >= target, else None (a plain scan: an
    exact test's power is not monotone in n)."""
    return next((n for n in range(2, MAX_SEEDS + 1) if power_of(n) >= target), None)


def sizing(prof, results, studies: dict[str, str] | None = None) -> "pd.DataFrame":
    """One row per claim: the pilot's units, effect (in the claimed direction) and sd, the seeds
    that decide the claim with probability POWER at alpha / m at that sd and at its upper
    SD_LEVEL limit, and the seeds the profile gives it. `studies` maps a profile's study to the
    pilot's study whose runs stand for it (a redesign under a new name: {new: old})."""
    import numpy as np
    import pandas as pd
    from scipy import stats as st
    from vgbench import paths, stats
    from vgbench.claims import samples
    res = paths.require(results, "aggregate stage", flag="--pilot")
    runs = pd.read_parquet(paths.aggregate("runs", res))
    curves_f = paths.aggregate("curves", res)
    curves = pd.read_parquet(curves_f) if curves_f.is_file() else None
    if studies:
        runs, curves = _as_studies(prof, runs, curves, studies)
    o = stats.outcomes(runs)
    fam = pd.Series([c.family for c in prof.claims]).value_counts().to_dict()
    rows = []
    for c in prof.claims:
        alpha = ALPHA / fam[c.family]
        study = prof.studies[c.study]
        row = {"claim": c.id, "m": fam[c.family], "seeds": len(study.seeds), "pilot_n": 0, "effect": math.nan,
               "sd": math.nan, "n": None, "n_cautious": None, "n_boot": None, "boot": False,
               "note": ""}
        x = samples(o, curves, c, c.treatment).dropna()
        y = samples(o, curves, c, c.control).dropna() if c.control is not None else pd.Series(dtype=float)
        if len(x) < 2 or (c.control is not None and len(y) < 2):
            rows.append({**row, "pilot_n": len(x), "note": "no pilot runs of its arms (other study or variant names?)"})
            continue
        common = x.index.intersection(y.index) if c.control is not None else x.index
        paired = c.control is None or (c.paired and c.test != "rates" and len(common) >= 2)
        if c.test == "rates":
            p1, p0 = float(x.mean()), float(y.mean())
            row.update(pilot_n=min(len(x), len(y)), effect=c.sign * (p1 - p0) + 0.0)
            # a pilot rate of 0 or 1 is an estimate too: shrink it half a unit in (Agresti-Coull style)
            shrink = lambda p, k: (p * k + 0.5) / (k + 1)   # noqa: E731
            q1, q0 = shrink(p1, len(x)), shrink(p0, len(y))
            n_ = _smallest(lambda n: _rates_power(q1, q0, n, alpha)) if abs(q1 - q0) > 1e-9 else None
            row.update(n=n_, n_cautious=n_, note="Fisher, rates shrunk half a run toward 1/2")
            rows.append(row)
            continue
        if paired:
            d = (c.sign * (x.loc[common] - y.loc[common]) if c.control is not None else c.sign * x).to_numpy(float)
            k, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
        else:
            k = min(len(x), len(y))
            mean = float(c.sign * (x.mean() - y.mean()))
            sd = float(math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2))
        sd_hi = sd * math.sqrt((k - 1) / st.chi2.ppf(1 - SD_LEVEL, k - 1))
        row.update(pilot_n=k, effect=mean + 0.0, sd=sd)
        if c.test == "equivalence":
            size = lambda s_: _smallest(lambda n: _equivalence_power(mean, s_, n, c.margin))   # noqa: E731
        elif sd == 0:   # every unit alike: the evaluator's exact sign test, whose p is 2 * 0.5^n
            size = lambda s_: max(2, math.ceil(math.log2(2 / alpha) + 1e-9)) if mean != 0 else None   # noqa: E731
            row["note"] = ("every pilot unit alike: sign-test floor" if mean != 0
                           else "every pilot pair alike, no difference: no seed count decides it")
        else:
            size = lambda s_: _smallest(lambda n: _t_power(abs(mean) / s_, n, alpha, not paired))   # noqa: E731
        if c.test != "equivalence":
            arms = (d, None) if paired else (x.to_numpy(float), y.to_numpy(float))
            row.update(boot=True, n_boot=_smallest(lambda n: _boot_power(*arms, n, alpha, paired)))
        row.update(n=size(sd), n_cautious=size(sd_hi) if sd > 0 else size(sd))
        rows.append(row)
    return pd.DataFrame(rows)


def _as_studies(prof, runs, curves, studies: dict[str, str]):
    """The pilot's runs (and curves) of study `old` relabelled as the profile's `new`, for each
    new -> old (those of the settings `new` fixes: _matching); a name that is neither the
    profile's nor the pilot's is a ConfigError."""
    from vgbench.config import ConfigError
    have = sorted(set(runs["study"]))
    for new, old in studies.items():
        if new not in prof.studies:
            raise ConfigError(f"--study {new}={old}: {new!r} is not a study of {prof.name} "
                              f"(studies: {', '.join(prof.studies)})")
        if old not in have:
            raise ConfigError(f"--study {new}={old}: the pilot has no runs of study {old!r} "
                              f"(its studies: {', '.join(have)})")
    import pandas as pd
    parts_r, parts_c = [runs[~runs["study"].isin(set(studies))]], [] if curves is None else [curves]
    for new, old in studies.items():
        r = _matching(prof.studies[new], runs[runs["study"] == old])
        ids = {i: f"{i}@{new}" for i in r["run_id"]}   # a copy per new study: one pilot study may stand for two
        parts_r.append(r.assign(study=new, run_id=r["run_id"].map(ids)))
        if curves is not None and "run_id" in curves:
            c = curves[curves["run_id"].isin(set(ids))]
            parts_c.append(c.assign(run_id=c["run_id"].map(ids)))
    return pd.concat(parts_r, ignore_index=True), (pd.concat(parts_c, ignore_index=True) if parts_c else None)


def _matching(study, r: "pd.DataFrame") -> "pd.DataFrame":
    """The pilot's final runs of one old study that stand for `study`: for each of its variants, the
    runs of the same variant name, less those whose setting differs from one `study` fixes (in its
    base or the variant) where the old study's runs of that variant vary in it -- e.g. a new study of
    one task, sized from an old one that ran two. A setting the old study held at another value
    throughout (a longer budget, say) is the redesign and is kept."""
    from vgbench.grid import dotted
    keep = r["stage"] == "final"
    for v, over in study.variants.items():
        rv = keep & (r["variant"] == v)
        for k, val in {**dotted(study.base), **dotted(over)}.items():
            if val is not None and k in r.columns and r.loc[rv, k].nunique(dropna=False) > 1:
                keep &= ~rv | (r[k] == val)
    return r[keep]


def print_sizing(prof, results, studies: dict[str, str] | None = None) -> None:
    t = sizing(prof, results, studies)
    w = max(len(c) for c in t["claim"])
    lvl = int(round(100 * SD_LEVEL))
    print(f"{'claim':<{w}}  {'m':>2}  {'pilot n':>7}  {'effect':>9}  {'sd':>9}  {'n':>5}  "
          f"{f'n (sd at {lvl}%)':>14}  {'n (boot)':>8}  {'seeds':>5}  note")
    fmt = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"   # noqa: E731
    cnt = lambda v: f"> {MAX_SEEDS}" if v is None or math.isnan(v) else str(int(v))   # noqa: E731
    for r in t.to_dict("records"):
        none = r["pilot_n"] < 2 and r["note"]
        n, nc = ("-", "-") if none else (cnt(r["n"]), cnt(r["n_cautious"]))
        nb = cnt(r["n_boot"]) if r["boot"] else "-"
        print(f"{r['claim']:<{w}}  {r['m']:>2}  {r['pilot_n']:>7}  {fmt(r['effect']):>9}  {fmt(r['sd']):>9}  "
              f"{n:>5}  {nc:>14}  {nb:>8}  {r['seeds']:>5}  {r['note']}")
    print(f"n: seeds (pairs, or runs per arm) that decide the claim with probability {POWER} at alpha / m "
          f"(alpha {ALPHA}, Holm's first step), at the pilot's sd and at its upper {lvl} % confidence limit "
          f"(normal approximation); n (boot): the same, simulated by resampling the pilot's units "
          f"({BOOT_DRAWS} draws per n; t-test claims), which keeps a skewed or zero-inflated pilot's shape")


def main(args) -> int:
    from vgbench.grid import load_profile
    prof = load_profile(args.profile)
    if getattr(args, "pilot", None):
        if not prof.claims:
            print(f"{args.profile}: no claims")
            return 0
        print_sizing(prof, args.pilot, dict(getattr(args, "study", None) or []))
        return 0
    t = table(prof)
    if t.empty:
        print(f"{args.profile}: no claims")
        return 0
    w = max(len(c) for c in t["claim"])
    print(f"{'claim':<{w}}  {'m':>2}  {'p floor':>9}  {'x m':>9}  test / verdict")
    for r in t.to_dict("records"):
        pf = "-" if r["p_floor"] is None or math.isnan(r["p_floor"]) else f"{r['p_floor']:.2g}"
        hf = "-" if r["holm_floor"] is None or math.isnan(r["holm_floor"]) else f"{r['holm_floor']:.2g}"
        print(f"{r['claim']:<{w}}  {r['m']:>2}  {pf:>9}  {hf:>9}  {r['test']}: {r['verdict']}")
    never = int((t["verdict"] == NEVER).sum())
    cond = int(t["verdict"].str.startswith("only if").sum())
    print(f"{len(t)} claims, alpha {ALPHA} Holm within families: {never} can never be supported, "
          f"{cond} only if the rest of their family is rejected first (add seeds to those)")
    if one := single_seed_tuning(prof):
        print(f"{len(one)} claim(s) compare arms whose learning rate is selected on one tuning seed "
              f"({', '.join(one[:4])}{', ...' if len(one) > 4 else ''}): the selection, and with it a "
              "verdict, can move with the seed or the CPU's rounding (README); tune on two or three "
              "(tune_seeds: [100, 101, 102])")
    return 0


def single_seed_tuning(prof) -> list[str]:
    """The claims whose study selects its learning rate on a single tuning seed."""
    return [c.id for c in prof.claims
            if prof.studies[c.study].lr_grid and len(prof.studies[c.study].tune_seeds) < 2]
