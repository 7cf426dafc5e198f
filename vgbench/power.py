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


def main(args) -> int:
    from vgbench.grid import load_profile
    prof = load_profile(args.profile)
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
    return 0
