"""Claims as data: the questions a profile asks, the claims that decide them, one evaluator.

A profile declares
    questions:
      - id: depth_mitigations
        question: Do batch norm and residual connections help, ...?
        figure: accuracy_vs_depth          # optional: the figure that shows the answer
    claims:
      - id: batch_norm_helps               # unique
        question: depth_mitigations        # a question id
        text: Batch norm helps
        study: mlp_mitigations
        treatment: {variant: batch_norm, depth: max}   # variant and/or axis values
        control: {variant: baseline, depth: max}       # omitted: the treatment is tested against 0
        outcome: score                     # see OUTCOMES
        direction: greater                 # greater | less: the claimed sign of treatment - control
        test: superiority                  # superiority | equivalence (with margin) | rates
        family: claims                     # Holm correction within each family (default: claims)
An axis value in a selector may be `max` or `min` (the study's largest / smallest value of that
axis). Outcomes along an axis (`score_auc`, `trainable`) take `along: <axis>`; their selectors
leave that axis free. `validate()` checks all of it when the profile loads (ConfigError naming
the claim, the bad name and what is allowed); `evaluate()` turns the outcomes of the runs into
effect, CI, p, Holm-corrected p and verdict. Nothing here knows a study or variant name.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from vgbench.config import ConfigError

CLAIM_KEYS = ("id", "question", "text", "study", "treatment", "control", "outcome", "direction", "test",
              "family", "margin", "along", "threshold", "paired")
QUESTION_KEYS = ("id", "question", "figure")
DIRECTIONS = ("greater", "less")
TESTS = ("superiority", "equivalence", "rates")

# outcome -> (what it is, per run or along an axis, the column of the outcomes frame)
OUTCOMES = {
    "score": "final test score (accuracy, or minus the loss; failed runs at the trivial predictor)",
    "log10_ratio_init": "log10 ||dL/dW_first|| / ||dL/dW_last|| at initialisation",
    "log10_ratio_final": "log10 ||dL/dW_first|| / ||dL/dW_last|| after training",
    "log10_ratio_init_f64": "log10_ratio_init computed through a float64 copy of the net where float32's first-layer "
                            "gradient is below 1e-10, never censored (a run trained before 2026-12-04 has "
                            "float32's value, or none where that underflowed)",
    "dead_fraction": "fraction of units <= 0 on a whole batch at the last measurement, mean over layers "
                     "(for Leaky ReLU, PReLU, ELU: never positive, although such units still pass a gradient)",
    "saturation": "fraction of saturated units at the last measurement, mean over layers",
    "diverged": "1 if the run diverged (NaN/inf loss or gradient), else 0",
    "jacobian_spread": "standard deviation of log10 singular values of the input-output Jacobian at "
                       "initialisation, mean over the recorded inputs (needs jacobian_inputs > 0)",
    "score_auc": "mean test score over the values of the `along` axis (area under score vs axis, per seed)",
    "trainable": "largest value of the `along` axis at which the score beats the trivial predictor by "
                 "`threshold` (per seed; the smallest value minus one step if none does)",
}
ALONG = ("score_auc", "trainable")
# censored outcomes: a first-layer gradient that underflowed float32 gives a ratio of 0, recorded at
# float32's smallest value (stats.outcomes, log10 -44.85). Not a bound: the backward signal loses
# its digits in float32's subnormal range before it reaches 0, and computed in float64 the 50-layer
# sigmoid nets of the default profile have ratios of 10^-42.5 to 10^-42.7 (2026-12-04), so the
# recorded value overstates the vanishing by ~2 decades there
CENSORED = ("log10_ratio_init", "log10_ratio_final")
NOTE_CENSORED = "counted at float32's smallest ratio: not a bound, the true ratio can be a few decades larger"


@dataclass(frozen=True)
class Claim:
    id: str
    question: str
    text: str
    study: str
    treatment: dict
    control: dict | None
    outcome: str
    direction: str = "greater"
    test: str = "superiority"
    family: str = "claims"
    margin: float | None = None
    along: str | None = None
    threshold: float = 0.05
    paired: bool = True

    @property
    def sign(self) -> int:
        return 1 if self.direction == "greater" else -1

    def experiment(self) -> str:
        def sel(d):
            return ", ".join(f"{k} {v}" if k != "variant" else str(v) for k, v in d.items()) or "all runs"
        ctl = f" vs {sel(self.control)}" if self.control is not None else ", against 0"
        along = f", along {self.along}" if self.along else ""
        return f"{self.study}: {sel(self.treatment)}{ctl}{along}"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    figure: str | None = None


@dataclass
class ClaimSet:
    questions: list = field(default_factory=list)
    claims: list = field(default_factory=list)


def _choices(name, value, allowed, where):
    if value not in allowed:
        raise ConfigError(f"{where}: unknown {name} {value!r}; allowed: {', '.join(map(str, allowed))}")


def _selector(sel, study, where: str, free: str | None) -> dict:
    """Validate a treatment/control selector against the study; resolve max/min axis values."""
    if sel is None:
        return None
    if not isinstance(sel, dict):
        raise ConfigError(f"{where}: expected a mapping of variant and/or axis values, got {sel!r}")
    out = {}
    for k, v in sel.items():
        if k == "variant":
            _choices("variant", v, list(study.variants), f"{where} (study '{study.name}')")
        elif k in study.axes:
            if k == free:
                raise ConfigError(f"{where}: '{k}' is the claim's `along` axis; leave it out of the selector")
            vals = study.axes[k]
            if v in ("max", "min"):
                try:
                    v = max(vals) if v == "max" else min(vals)
                except TypeError:
                    raise ConfigError(f"{where}: axis '{k}' has no order for '{v}': {vals}") from None
            elif v not in vals:
                raise ConfigError(f"{where}: {k} {v!r} is not a value of axis '{k}' of study '{study.name}'; "
                                  f"allowed: {', '.join(map(str, vals))}, max, min")
        else:
            allowed = ["variant", *study.axes]
            raise ConfigError(f"{where}: unknown selector key '{k}' for study '{study.name}'; allowed: "
                              f"{', '.join(allowed)}")
        out[k] = v
    return out


def validate(raw: dict, studies: dict, figures=()) -> ClaimSet:
    """Questions and claims of a raw profile mapping, checked against its studies."""
    qs_raw, cl_raw = raw.get("questions") or [], raw.get("claims") or []
    if not isinstance(qs_raw, list) or not isinstance(cl_raw, list):
        raise ConfigError("profile: 'questions' and 'claims' must be lists")
    out = ClaimSet()
    for i, q in enumerate(qs_raw):
        where = f"question {i + 1}"
        if not isinstance(q, dict) or not {"id", "question"} <= set(q):
            raise ConfigError(f"{where}: expected a mapping with id and question, got {q!r}")
        for k in q:
            _choices("key", k, QUESTION_KEYS, where)
        if q.get("figure") is not None and figures:
            _choices("figure", q["figure"], list(figures), f"question '{q['id']}'")
        out.questions.append(Question(str(q["id"]), str(q["question"]), q.get("figure")))
    qids = [q.id for q in out.questions]
    if len(set(qids)) != len(qids):
        raise ConfigError(f"profile: question ids repeat: {qids}")
    for i, c in enumerate(cl_raw):
        where = f"claim {i + 1}" + (f" '{c.get('id')}'" if isinstance(c, dict) and c.get("id") else "")
        if not isinstance(c, dict):
            raise ConfigError(f"{where}: expected a mapping, got {c!r}")
        for k in c:
            _choices("key", k, CLAIM_KEYS, where)
        for k in ("id", "question", "text", "study", "treatment", "outcome"):
            if k not in c:
                raise ConfigError(f"{where}: missing '{k}'")
        for k in ("id", "text"):
            if not isinstance(c[k], str) or not c[k].strip():
                raise ConfigError(f"{where}: '{k}' must be a non-empty string, got {c[k]!r}")
        _choices("question", c["question"], qids, where)
        _choices("study", c["study"], list(studies), where)
        _choices("outcome", c["outcome"], list(OUTCOMES), where)
        _choices("direction", c.get("direction", "greater"), DIRECTIONS, where)
        _choices("test", c.get("test", "superiority"), TESTS, where)
        study = studies[c["study"]]
        along = c.get("along")
        if (c["outcome"] in ALONG) != (along is not None):
            raise ConfigError(f"{where}: outcome '{c['outcome']}' {'needs' if c['outcome'] in ALONG else 'takes no'} "
                              f"`along: <axis>`")
        if along is not None:
            _choices("along axis", along, list(study.axes), f"{where} (study '{c['study']}')")
        test = c.get("test", "superiority")
        if test == "equivalence":
            m = c.get("margin")
            if isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0:
                raise ConfigError(f"{where}: an equivalence test needs margin > 0, got {m!r}")
        if test == "rates" and c["outcome"] != "diverged":
            raise ConfigError(f"{where}: test 'rates' compares divergence counts; use outcome 'diverged'")
        if "margin" in c and test != "equivalence":
            raise ConfigError(f"{where}: `margin` belongs to test 'equivalence' only (this claim's test is '{test}')")
        if c.get("control") is None and test != "superiority":
            raise ConfigError(f"{where}: test '{test}' needs a control")
        if "threshold" in c:
            t = c["threshold"]
            if c["outcome"] != "trainable":
                raise ConfigError(f"{where}: `threshold` belongs to outcome 'trainable' only")
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < math.inf:
                raise ConfigError(f"{where}: threshold must be a number >= 0 (score above the trivial "
                                  f"predictor), got {t!r}")
        if not isinstance(c.get("paired", True), bool):
            raise ConfigError(f"{where}: paired must be true or false, got {c['paired']!r}")
        if not isinstance(c.get("family", "claims"), str):
            raise ConfigError(f"{where}: family must be a name (the Holm family), got {c['family']!r}")
        treatment = _selector(c["treatment"], study, f"{where}: treatment", along)
        control = _selector(c.get("control"), study, f"{where}: control", along)
        if treatment == control:
            raise ConfigError(f"{where}: treatment and control select the same runs ({treatment}); "
                              "a claim compares two different conditions")
        out.claims.append(Claim(
            id=str(c["id"]), question=c["question"], text=str(c["text"]), study=c["study"],
            treatment=treatment, control=control,
            outcome=c["outcome"], direction=c.get("direction", "greater"), test=test,
            family=c.get("family", "claims"), margin=c.get("margin"), along=along,
            threshold=float(c.get("threshold", 0.05)), paired=c.get("paired", True)))
    ids = [c.id for c in out.claims]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"profile: claim ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
    return out


# --- evaluation --------------------------------------------------------------------------------

def _select(o: pd.DataFrame, study: str, sel: dict) -> pd.DataFrame:
    import numpy as np
    import pandas as pd
    s = o[o["study"] == study]
    for k, v in sel.items():
        if k == "variant":
            s = s[s["variant"] == v]
        else:
            s = s[s["labels_key"].map(lambda j: json.loads(j).get(k)) == v]
    return s


def _last_mean(curves: pd.DataFrame | None, kind: str) -> pd.Series:
    """run_id -> mean over layers of `kind` at each run's last recorded step."""
    import numpy as np
    import pandas as pd
    if curves is None or curves.empty:
        return pd.Series(dtype=float)
    d = curves[curves["kind"] == kind]
    if d.empty:
        return pd.Series(dtype=float)
    last = d.groupby("run_id", observed=True)["step"].transform("max")
    return d[d["step"] == last].groupby("run_id", observed=True)["value"].mean()


def per_run(o: pd.DataFrame, curves: pd.DataFrame | None, outcome: str) -> pd.Series:
    """The per-run value of a per-run outcome (index aligned with o)."""
    import numpy as np
    import pandas as pd
    if outcome in ("score", "log10_ratio_init", "log10_ratio_final", "log10_ratio_init_f64"):
        return o[outcome].astype(float)
    if outcome == "diverged":
        return (o["status"] == "diverged").astype(float)
    if outcome in ("dead_fraction", "saturation"):
        kind = "dead" if outcome == "dead_fraction" else "saturation"
        return o["run_id"].map(_last_mean(curves, kind)).astype(float)
    if outcome == "jacobian_spread":
        return o["run_id"].map(jacobian_spread(curves)).astype(float)
    raise ValueError(outcome)  # pragma: no cover - validate() rejects unknown outcomes


def jacobian_spread(curves: pd.DataFrame | None) -> pd.Series:
    """run_id -> std of log10 Jacobian singular values per input example, mean over examples."""
    import numpy as np
    import pandas as pd
    if curves is None or curves.empty:
        return pd.Series(dtype=float)
    d = curves[curves["kind"] == "jacobian_sv"]
    if d.empty:
        return pd.Series(dtype=float)
    d = d.assign(lg=np.log10(d["value"].astype(float).clip(lower=1e-30)))
    return d.groupby(["run_id", "name"], observed=True)["lg"].std(ddof=0).groupby("run_id", observed=True).mean()


def samples(o: pd.DataFrame, curves, claim: Claim, sel: dict) -> pd.Series:
    """One value per unit of the claim's outcome, indexed by its pairing key (seed, and the
    axis values the selector leaves free): per run, or per seed for outcomes along an axis."""
    import pandas as pd
    from vgbench.scores import trivial_score
    s = _select(o, claim.study, sel)
    if s.empty:
        return pd.Series(dtype=float)
    lab = s["labels_key"].map(json.loads)
    if claim.outcome not in ALONG:
        free = lab.map(lambda d: json.dumps({k: v for k, v in d.items() if k not in sel}, sort_keys=True))
        return pd.Series(per_run(s, curves, claim.outcome).to_numpy(),
                         index=pd.MultiIndex.from_arrays([s["seed"].to_numpy(), free.to_numpy()]))
    s = s.assign(_along=lab.map(lambda d: d.get(claim.along)),
                 _rest=lab.map(lambda d: json.dumps({k: v for k, v in d.items()
                                                     if k not in sel and k != claim.along}, sort_keys=True)),
                 _trivial=trivial_score(s))
    vals = {}
    for key, g in s.groupby(["seed", "_rest"]):
        g = g.sort_values("_along")
        if claim.outcome == "score_auc":
            vals[key] = float(g["score"].mean())
        else:
            ok = g.loc[g["score"] - g["_trivial"] >= claim.threshold, "_along"]
            axis = sorted(g["_along"])
            step = (axis[1] - axis[0]) if len(axis) > 1 else 1
            vals[key] = float(ok.max()) if len(ok) else float(axis[0] - step)
    return pd.Series(vals, dtype=float)


def test(c: Claim, x: pd.Series, y: pd.Series) -> dict:
    """The claim's test on its treatment and control samples (indexed by their pairing key; y
    empty without a control): paired, effect in the claimed direction, 95 % CI, Hedges' g, p
    (and a note where the experiment cannot test the claim)."""
    import numpy as np
    from vgbench import stats
    common = x.index.intersection(y.index) if c.control is not None else []
    paired = c.paired and c.test != "rates" and len(common) == len(x) == len(y) and len(common) >= 2
    row = {"paired": paired}
    if c.control is None:
        xs = c.sign * x.to_numpy(float)
        # every unit alike (a discrete outcome, or every run censored at one floor): the t-test's
        # zero variance is an artefact and its p of 0 meaningless; the exact sign test, as for pairs
        p = float(stats.st.ttest_1samp(xs, 0.0).pvalue) if np.ptp(xs) > 0 else _sign_test(xs, row)
        lo, hi = stats.bootstrap_ci(xs)
        row.update(effect=float(xs.mean()), ci_low=lo, ci_high=hi, hedges_g=math.nan, p=p)
    elif c.test == "rates":
        xa, ya = x.to_numpy(float), y.to_numpy(float)
        table = [[int(xa.sum()), len(xa) - int(xa.sum())], [int(ya.sum()), len(ya) - int(ya.sum())]]
        lo, hi = stats.bootstrap_diff_ci(xa, ya)
        lo, hi = sorted((c.sign * lo, c.sign * hi))
        row.update(effect=float(c.sign * (xa.mean() - ya.mean())), ci_low=lo, ci_high=hi, hedges_g=math.nan,
                   p=float(stats.st.fisher_exact(table).pvalue))
        # nothing to prevent (or to cause): the experiment cannot test the claim
        if c.direction == "less" and ya.sum() == 0:
            row["note"] = "control never diverged"
    elif paired:
        d = c.sign * (x.loc[common] - y.loc[common]).to_numpy(float)
        lo, hi = stats.bootstrap_ci(d)
        if np.ptp(d) > 0:
            p = float(stats.st.ttest_rel(x.loc[common], y.loc[common]).pvalue)
        else:  # every pair differs by the same amount: the t-test is undefined; exact sign test
            p = _sign_test(d, row)
        sd = d.std(ddof=1)
        row.update(effect=float(d.mean()), ci_low=lo, ci_high=hi, p=p,
                   hedges_g=float(d.mean() / sd * (1 - 3 / (4 * (len(d) - 1) - 1))) if sd > 0 else math.nan)
    else:
        r = stats.compare(x.to_numpy(float), y.to_numpy(float))
        lo, hi = sorted((c.sign * r["diff_ci_low"], c.sign * r["diff_ci_high"]))
        row.update(effect=c.sign * r["diff"], ci_low=lo, ci_high=hi, hedges_g=c.sign * r["hedges_g"],
                   p=r["p_welch"])
    return row


def _sign_test(d, row: dict) -> float:
    """Two-sided exact sign test of values that are all equal: 1 if they are 0, else 2 * 0.5^n, the
    smallest p n units can give (row["_alike"] records it for note_too_few_seeds)."""
    from vgbench import stats
    if d[0] == 0:
        return 1.0
    row["_alike"] = len(d)
    return float(stats.st.binomtest(len(d), len(d), 0.5).pvalue)


def evaluate(o: pd.DataFrame, curves: pd.DataFrame | None, claims: list[Claim]) -> pd.DataFrame:
    """One row per claim: n, effect in the claimed direction with its 95 % CI, p, p_Holm within
    the claim's family, verdict (and a note where the design cannot decide)."""
    import numpy as np
    import pandas as pd
    from vgbench import stats
    rows = []
    for c in claims:
        row = {"id": c.id, "question": c.question, "claim": c.text, "experiment": c.experiment(),
               "quantity": c.outcome, "family": c.family, "kind": c.test if c.control is not None else "one_sample",
               "margin": c.margin, "note": None, "caveat": None}
        row.update(runs_from(pd.concat([_select(o, c.study, sel) for sel in (c.treatment, c.control)
                                        if sel is not None])))
        x = samples(o, curves, c, c.treatment).dropna()
        y = samples(o, curves, c, c.control).dropna() if c.control is not None else pd.Series(dtype=float)
        row.update(n=len(x), n_base=len(y))
        if len(x) < 2 or (c.control is not None and len(y) < 2):
            rows.append({**row, "note": "too few runs"})
            continue
        row.update(test(c, x, y))
        row.update(censoring(c, x, y))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for k in ("paired", "effect", "ci_low", "ci_high", "hedges_g", "p"):   # absent where no claim had runs enough
        if k not in df:
            df[k] = np.nan
    df["p_holm"] = np.nan
    for _, idx in df.groupby("family").groups.items():
        df.loc[idx, "p_holm"] = stats.holm(df.loc[idx, "p"])
    df[["note", "caveat"]] = df[["note", "caveat"]].astype(object)
    df["verdict"] = [verdict(r) for r in df.to_dict("records")]
    df = note_too_few_seeds(df)
    return df[[k for k in df if k not in ("commits", "kernels")] + ["commits", "kernels"]]


def runs_from(s: pd.DataFrame) -> dict:
    """Where a claim's runs come from: how many were trained at each git commit ("commits") and
    with each of torch's CPU kernel sets ("kernels"), as "<commit[:7]> (n); ...", most first, from
    the aggregate's provenance columns ("unknown" where a run records none). Shipped claims cite
    their runs with it (vgbench diagnose), not with a hand-written note."""
    def count(col: str, short=lambda x: x) -> str:
        v = [short(x) if isinstance(x, str) and x else "unknown" for x in (s[col] if col in s else [None] * len(s))]
        n = {k: v.count(k) for k in dict.fromkeys(v)}
        return "; ".join(f"{k} ({m})" for k, m in sorted(n.items(), key=lambda kv: (-kv[1], kv[0])))
    return {"commits": count("commit", lambda x: x[:7] + "-dirty" * x.endswith("-dirty")),
            "kernels": count("cpu_capability")}


def censoring(c: Claim, x: pd.Series, y: pd.Series) -> dict:
    """Units at the censoring floor of a CENSORED outcome. The rule, pre-registered, took their true
    values to lie lower still: where the censoring is in the claim's direction (treatment censored
    and the claim says `less`, control censored and it says `greater`) the claim stands with a
    caveat; where it is against it, or across an equivalence margin, the data cannot decide the
    claim: a note, and the verdict is inconclusive. The premise does not hold exactly (see
    CENSORED: the true value can lie a few decades above the floor), so the caveat says the effect
    is censored, not that it is a bound: a claim whose effect is a few decades from its threshold
    cannot rest on censored units."""
    from vgbench import stats
    if c.outcome not in CENSORED:
        return {}
    kx, ky = stats.censored(x), stats.censored(y)
    if not kx + ky:
        return {}
    what = f"{kx + ky} of {len(x) + len(y)} runs' first-layer gradient underflowed float32"
    if c.test == "equivalence" or (kx and c.direction == "greater") or (ky and c.direction == "less"):
        return {"note": f"{what}, against the claim: cannot decide it"}
    return {"caveat": f"{what}: the effect is censored ({NOTE_CENSORED})"}


def note_too_few_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """A rate claim at the most extreme outcome its seeds allow (every control seed diverged,
    no treatment seed did) that is still inconclusive after the correction is inconclusive for
    lack of seeds, not for lack of an effect: the note says so."""
    import numpy as np
    import pandas as pd
    extreme = (df["kind"] == "rates") & (df["effect"] == 1.0) & (df["verdict"] == "inconclusive") & df["note"].isna()
    for i in df.index[extreme]:
        n_fam = int((df["family"] == df.at[i, "family"]).sum())
        df.at[i, "note"] = (f"{int(df.at[i, 'n_base'])}/{int(df.at[i, 'n_base'])} vs 0/{int(df.at[i, 'n'])}, "
                            f"the most extreme outcome: too few seeds for {n_fam} claims")
    # every unit alike, in the claimed direction: the sign test's floor, 2 * 0.5^n, is the p
    alike = df.get("_alike", pd.Series(np.nan, index=df.index))
    for i in df.index[alike.notna() & (df["effect"] > 0) & (df["verdict"] == "inconclusive") & df["note"].isna()]:
        n = int(alike[i])
        df.at[i, "note"] = (f"all {n} {'pairs' if df.at[i, 'paired'] else 'seeds'} alike, the most extreme outcome: "
                            f"the exact sign test cannot go below p = {2 * 0.5 ** n:.2g}; too few seeds")
    return df.drop(columns="_alike", errors="ignore")


def against_margin(lo: float, hi: float, m: float) -> str:
    """Where a CI lies against an equivalence margin +-m: inside, outside or across it."""
    return "inside" if -m <= lo and hi <= m else "outside" if hi < -m or lo > m else "across"


def verdict(r: dict) -> str:
    """supported: significant (Holm) in the claimed direction -- or, for an equivalence claim,
    the CI inside +-margin; not supported: significant the other way, or the CI rules out
    any benefit (equivalence: CI entirely outside the margin); otherwise inconclusive."""
    import numpy as np
    import pandas as pd
    if isinstance(r.get("note"), str) or not np.isfinite(r.get("p_holm", np.nan)):
        return "inconclusive"
    lo, hi, p = r["ci_low"], r["ci_high"], r["p_holm"]
    if r.get("kind") == "equivalence":
        where = against_margin(lo, hi, r["margin"])
        if where == "inside":
            return "supported"
        if where == "outside" or (p < ALPHA and r["effect"] < 0):
            return "not supported"
        return "inconclusive"
    if p < ALPHA and r["effect"] > 0:
        return "supported"
    if (p < ALPHA and r["effect"] < 0) or hi <= 0:
        return "not supported"
    return "inconclusive"


ALPHA = 0.05


def answer(question, rows: pd.DataFrame) -> str:
    """The answer to one question in one sentence per claim, from its verdicts."""
    import numpy as np
    import pandas as pd
    if rows.empty:
        return "Not asked by any claim of this profile."
    parts = []
    for r in rows.to_dict("records"):
        v = r["verdict"]
        head = {"supported": "Supported", "not supported": "Not supported", "inconclusive": "Inconclusive"}[v]
        if not np.isfinite(r.get("effect", np.nan)):
            parts.append(f"{head}: {r['claim']} ({r.get('note') or 'no data'}).")
            continue
        p = r["p_holm"]
        ptxt = "p_Holm < 0.001" if p < 0.001 else f"p_Holm = {p:.3f}"
        if r["kind"] == "equivalence":  # decided by the CI against the margin, not by p
            ptxt = f"CI {against_margin(r['ci_low'], r['ci_high'], r['margin'])} the equivalence margin +-{r['margin']:g}"
        pair = "paired " if r.get("paired") is True else ""
        n = f"{int(r['n'])} v {int(r['n_base'])} {pair}seeds" if r["kind"] != "one_sample" else f"{int(r['n'])} seeds"
        note = "".join(f"; {r[k]}" for k in ("note", "caveat") if isinstance(r.get(k), str))
        parts.append(f"{head}: {r['claim']} -- effect {r['effect']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}] "
                     f"on {r['quantity']} ({r['experiment']}), {ptxt}, {n}{note}.")
    return " ".join(parts)
