"""`vgbench table NAME PROFILE`: booktabs LaTeX tables (\\input-ready) from results/stats.

Tables only format numbers computed by the statistics and theory stages (and the profile,
for `setup`). `numbers` writes \\newcommand macros for every number quoted in prose.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from vgbench.config import ConfigError
from vgbench import paths
from vgbench.provenance import atomic_write

NAMES = paths.TABLE_NAMES


def esc(s) -> str:
    s = str(s)
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        s = s.replace(a, b)
    return s


def num(x, digits=2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "--"
    return f"{x:.{digits}f}"


def mci(m, lo, hi, digits=2) -> str:
    if not (isinstance(m, (int, float)) and math.isfinite(m)):
        return "--"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return num(m, digits)
    return f"{num(m, digits)} {{\\scriptsize [{num(lo, digits)}, {num(hi, digits)}]}}"


def pval(p) -> str:
    if p is None or not math.isfinite(p):
        return "--"
    return "$<$0.001" if p < 0.001 else f"{p:.3f}"


def tabular(cols: str, header: list[str], rows: list[list[str]], caption: str, label: str) -> str:
    lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
             r"\resizebox{\linewidth}{!}{%", f"\\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows] or [r"\multicolumn{%d}{c}{(no data in this profile)} \\"
                                                         % len(header)]
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(lines)


def _labels(s) -> dict:
    try:
        return json.loads(s)
    except (TypeError, ValueError):
        return {}


def tspec(prof, name: str) -> dict:
    """The profile's `report.tables.<name>` entry (which study a table shows), {} if none."""
    return ((prof.report or {}).get("tables") or {}).get(name) or {}


def main_results(f, prof) -> str:
    c, comp = f["conditions"], f["comparisons"]
    study = tspec(prof, "main_results").get("study")
    c = c[c["study"] == study].copy() if len(c) else c
    if c.empty:
        return tabular("l", ["variant"], [], "Test accuracy of the MLP mitigations.", "tab:main_results")
    c["depth"] = c["labels"].map(lambda s: _labels(s).get("depth"))
    depths = sorted(c["depth"].dropna().unique())
    sig = {}
    if len(comp):
        s = comp[(comp["study"] == study) & (comp["quantity"] == "score")]
        for r in s.itertuples():
            sig[(r.variant, _labels(r.labels).get("depth"))] = (bool(r.significant), r.diff)
    best = c.groupby("depth")["value_mean"].max()
    rows = []
    for v in prof.studies[study].variants if study in prof.studies else sorted(c["variant"].unique()):
        row = [esc(v)]
        for d in depths:
            r = c[(c["variant"] == v) & (c["depth"] == d)]
            if r.empty:
                row.append("--")
                continue
            r = r.iloc[0]
            cell = mci(r["value_mean"], r["value_ci_low"], r["value_ci_high"])
            if abs(r["value_mean"] - best[d]) < 1e-12:
                cell = r"\textbf{" + num(r["value_mean"]) + "}" + cell[len(num(r["value_mean"])):]
            s = sig.get((v, d))
            if s and s[0]:
                cell += r"$^{\uparrow}$" if s[1] > 0 else r"$^{\downarrow}$"
            if r["divergence_rate"] > 0:
                cell += f" {{\\scriptsize ({int(r['n_diverged'])}/{int(r['n'])} div.)}}"
            row.append(cell)
        rows.append(row)
    return tabular("l" + "c" * len(depths), ["variant"] + [f"depth {int(d)}" for d in depths], rows,
                   "Test accuracy on mnist1d of the MLP variants (mean and 95\\% bootstrap CI over seeds; "
                   "diverged runs count at chance). Bold: best per depth. Arrows: Holm-significant difference "
                   "from the sigmoid baseline.", "tab:main_results")


def grad_ratios(f, prof) -> str:
    c = f["conditions"]
    study = tspec(prof, "grad_ratios").get("study")
    c = c[c["study"] == study].copy() if len(c) else c
    rows = []
    if len(c):
        c["depth"] = c["labels"].map(lambda s: _labels(s).get("depth"))
        d = c["depth"].max()
        for _, r in c[c["depth"] == d].sort_values("variant").iterrows():
            rows.append([esc(r["variant"]), *(_ratio_cell(r, q) for q in ("log10_ratio_init", "log10_ratio_final"))])
        cap = f"{esc(study)}, depth {int(d)}: $\\log_{{10}}$ of the first/last-layer weight-gradient norm ratio"
    else:
        cap = "First/last-layer weight-gradient ratios"
    return tabular("lcc", ["variant", "at init", "after training"], rows,
                   cap + " (mean, 95\\% CI over seeds; 0 = balanced, $-k$ = $k$ orders of magnitude smaller at "
                   "the input). ($k$/$n$ u.): in $k$ of $n$ runs the first-layer gradient underflowed float32 and "
                   "its ratio counts as float32's smallest value, a censored value, not a bound: the true "
                   "ratio can be a few decades larger.",
                   "tab:grad_ratios")


def _ratio_cell(r, q: str) -> str:
    """A condition's mean log10 ratio with its CI; marked as censored where runs underflowed."""
    cell = mci(r[f"{q}_mean"], r[f"{q}_ci_low"], r[f"{q}_ci_high"])
    k = r.get(f"{q}_censored")
    if pd.isna(k) or k <= 0:
        return cell
    return f"{cell} {{\\scriptsize ({int(k)}/{int(r[f'{q}_n'])} u.)}}"


def rnn_results(f, prof) -> str:
    c = f["conditions"]
    c = c[c["study"].isin(tspec(prof, "rnn_results").get("studies") or [])].copy() if len(c) else c
    rows = []
    for r in c.itertuples():
        lab = _labels(r.labels)
        rows.append([esc(r.variant), esc(lab.get("task", r.task)), str(lab.get("task_args.seq_len", "--")),
                     esc(r.metric), mci(r.value_mean, r.value_ci_low, r.value_ci_high, 3), num(r.baseline_value, 3),
                     num(r.divergence_rate)])
    rows.sort(key=lambda x: (x[1], int(x[2]) if x[2].isdigit() else 0, x[0]))
    return tabular("lllllll", ["model", "task", "T", "metric", "mean [95\\% CI]", "trivial", "div."], rows,
                   "Recurrent models: test metric per task and sequence length (accuracy: higher is better; "
                   "loss: lower is better; trivial: chance or constant/memoryless predictor).",
                   "tab:rnn_results")


def theory_slopes(th) -> pd.DataFrame:
    """One row per activation x init: predicted and measured per-layer decay, and their
    difference (the theory stage repeats the slopes on every layer row)."""
    cols = [c for c in ("slope_predicted", "slope_measured", "slope_predicted_examples") if c in th]
    g = th.groupby(["activation", "init"])[cols].first().reset_index()
    if "slope_predicted_examples" not in g:
        g["slope_predicted_examples"] = float("nan")
    return g.assign(difference=g["slope_measured"] - g["slope_predicted"],
                    difference_examples=g["slope_measured"] - g["slope_predicted_examples"])


def theory_vs_measured(f, prof) -> str:
    t = f["theory"]
    rows = []
    if len(t):
        for r in theory_slopes(t).itertuples():
            rows.append([esc(r.activation), esc(r.init), num(r.slope_predicted, 3),
                         num(r.slope_predicted_examples, 3), num(r.slope_measured, 3), num(r.difference, 3),
                         num(r.difference_examples, 3)])
    return tabular("llccccc", ["activation", "init", "predicted", "per-example", "measured", "difference",
                               "diff. (per-ex.)"], rows,
                   "Per-layer decay of $\\log_{10}\\|\\partial L/\\partial h_l\\|$ at initialisation (least-squares "
                   "slope over layers): mean-field prediction for one input norm and averaged over the "
                   "examples' own input norms, vs measurement (mean over seeds).",
                   "tab:theory_vs_measured")


def setup(f, prof) -> str:
    rows = []
    for s in prof.studies.values():
        b = s.base
        axes = "; ".join(f"{esc(k)}: {esc(', '.join(map(str, v)))}" for k, v in s.axes.items()) or "--"
        rows.append([esc(s.name), esc(f"{b.get('model', 'mlp')} on {b.get('task', 'mnist1d')}"),
                     str(len(s.variants)), axes, str(len(s.seeds)), str(b.get("steps", "--")),
                     esc(", ".join(map(str, s.lr_grid)) or f"fixed ({b.get('lr', '--')})")])
    return tabular("lllp{4.2cm}lll", ["study", "model / task", "variants", "axes", "seeds", "steps", "lr grid"],
                   rows, f"What was run: profile \\texttt{{{esc(prof.name)}}} (hash \\texttt{{{prof.hash}}}).",
                   "tab:setup")


def claims(f, prof) -> str:
    c = f["claims"]
    rows = []
    for r in c.itertuples():
        eff = mci(getattr(r, "effect", math.nan), getattr(r, "ci_low", math.nan), getattr(r, "ci_high", math.nan), 3)
        verdict = r"\textbf{" + esc(r.verdict) + "}" + "".join(
            f"\\newline{{\\scriptsize ({esc(n)})}}" for n in (getattr(r, "note", None), getattr(r, "caveat", None))
            if isinstance(n, str))
        rows.append([esc(r.claim), esc(r.experiment), esc(r.quantity), eff, pval(getattr(r, "p_holm", math.nan)),
                     verdict])
    return tabular("p{3.4cm}p{4.6cm}lllp{2.9cm}", ["claim", "experiment", "quantity", "effect [95\\% CI]", "$p_{Holm}$",
                                           "verdict"], rows,
                   "Claims about vanishing and exploding gradients, declared in the profile before the runs, tested. "
                   "Effect: difference in the claimed direction (positive = as claimed); $p$: paired $t$-test where "
                   "treatment and control share seeds, else Welch's test (Fisher's exact test for divergence rates, a "
                   "one-sample $t$-test for a claim without control), Holm-corrected within the claim's family; verdicts "
                   "computed from the data (supported: significant as claimed; not supported: significant the "
                   "other way or CI ruling out a benefit; equivalence claims: CI within $\\pm$ margin). CI: percentile "
                   "bootstrap over seeds (of the per-seed differences where paired), per claim and not corrected for "
                   "the family, so a CI that excludes 0 can stand beside a $p_{Holm}$ above 0.05.",
                   "tab:claims")


def answers(f, prof) -> str:
    """One paragraph per question of the profile: its answer computed from its claims'
    verdicts (vgbench.claims.answer), the figure that shows it, and the claims behind it."""
    from vgbench.claims import answer
    cl = f["claims"]
    out = ["% generated by `vgbench table answers`: one paragraph per question of the profile"]
    for q in prof.questions:
        rows = cl[cl["question"] == q.id] if len(cl) and "question" in cl else pd.DataFrame()
        verdicts = rows["verdict"].value_counts().to_dict() if len(rows) else {}
        summary = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) or "no claims"
        fig = f" (Figure~\\ref{{fig:{q.figure}}})" if q.figure else ""
        out += [f"\\subsection*{{{esc(q.question)}}}",
                f"\\textbf{{{esc(summary)}}}{fig}. {esc(answer(q, rows))}", ""]
    return "\n".join(out) + "\n"


def phase_numbers(f) -> dict:
    """Macros for the phase diagram's boundary agreement (theory.phase_boundary), when the profile
    draws one and its study has runs: cells, percent of cells where measurement and theory agree,
    Spearman rho (and p) of the measured vs predicted trainable depth over sigma_w^2."""
    from vgbench import theory
    from vgbench.figures._data import spec
    from vgbench.stats import outcomes
    runs, study = f["runs"], spec(f, "phase_diagram").get("study")
    if not study or not len(runs) or study not in set(runs["study"]):
        return {}
    _, s = theory.phase_boundary(outcomes(runs), study)
    if not s:
        return {}
    out = {"PhaseCells": str(s["cells"]), "PhaseAgreement": f"{100 * s['cell_agreement']:.0f}"}
    if s["spearman_rho"] == s["spearman_rho"]:
        out.update(PhaseSpearman=num(s["spearman_rho"], 2), PhaseSpearmanP=pval(s["spearman_p"]))
    return out


def theory_gap(th) -> dict:
    """Macros: median and largest |measured - predicted| per-layer decay over activation x
    init pairs, and the pair with the largest gap ("--" without a theory table)."""
    vals = {"TheoryMedianGap": "--", "TheoryMaxGap": "--", "TheoryWorst": "--"}
    if len(th):
        gap = theory_slopes(th).set_index(["activation", "init"])["difference"].abs().dropna()
        if len(gap):
            act, init = gap.idxmax()
            vals.update({"TheoryMedianGap": num(gap.median(), 3), "TheoryMaxGap": num(gap.max(), 3),
                         "TheoryWorst": esc(f"{act} with {init} init")})
            ex = theory_slopes(th).set_index(["activation", "init"])["difference_examples"].abs().dropna()
            if len(ex):
                vals.update({"TheoryMedianGapExamples": num(ex.median(), 3),
                             "TheoryWorstGapExamples": num(float(ex.loc[(act, init)]), 3) if (act, init) in ex
                             else "--"})
    return vals


def _macro(name: str) -> str:
    return "".join(ch for ch in name.title() if ch.isalpha())


def cost(runs: pd.DataFrame, jobs: pd.DataFrame) -> dict:
    """Where the training jobs' CPU time went: the runs' own CPU time vs their processes' CPU time
    (imports, setup between runs), and within runs the training loop vs the rest. Markers written
    before runs_cpu_s was recorded fall back to the runs' wall time (an overestimate on a busy machine)."""
    out = {}
    ok = jobs.dropna(subset=["cpu_s"]) if len(jobs) else jobs
    if len(ok) and float(ok["cpu_s"].sum()) > 0:
        cpu = float(ok["cpu_s"].sum())
        out["JobCoreHours"] = num(cpu / 3600, 2)
        runs_cpu = ok["runs_cpu_s"].fillna(ok["runs_wall_s"]) if "runs_cpu_s" in ok else ok["runs_wall_s"]
        out["TrainingShare"] = num(100 * float(runs_cpu.sum()) / cpu, 0)
        out["ImportShare"] = num(100 * float(ok["import_s"].sum()) / cpu, 0)
        out["NumJobs"] = str(len(ok))
    if {"train_s", "wall_s"} <= set(runs) and float(runs["wall_s"].sum()) > 0:
        out["FitShare"] = num(100 * float(runs["train_s"].sum()) / float(runs["wall_s"].sum()), 0)
    return out


def _underflow(row: pd.Series, macro: str) -> dict:
    """For a quoted log10 first/last ratio at init: where some runs' first-layer gradient underflowed
    float32 (ratio 0, censored at float32's smallest value) the quoted ratio is censored, which
    `<macro>Note` says, with in how many runs (not a bound: claims.CENSORED); else empty."""
    k = row.get("log10_ratio_init_censored")
    if pd.isna(k) or k <= 0:
        return {f"{macro}Note": ""}
    return {f"{macro}Note": f" (censored: its first-layer gradient underflowed float32 in {int(k)} of "
                            f"{int(row['log10_ratio_init_n'])} runs, whose ratio counts as float32's smallest "
                            f"value; the true ratio can be a few decades larger)"}


def kernels(runs: pd.DataFrame) -> str:
    """Torch's CPU kernel sets the runs were trained with and how many runs each ("AVX512 (1253)"),
    'unrecorded' for runs from before it was recorded."""
    caps = runs["cpu_capability"] if "cpu_capability" in runs else pd.Series("unrecorded", index=runs.index)
    return esc(", ".join(f"{k} ({v})" for k, v in caps.fillna("unrecorded").value_counts().items())) or "--"


def numbers(f, prof) -> str:
    from vgbench.provenance import git_commit, versions
    runs, c, cl = f["runs"], f["conditions"], f["claims"]
    fin = runs[runs["stage"] == "final"] if len(runs) else runs
    vals = {
        "NumRuns": str(len(runs)), "NumFinalRuns": str(len(fin)),
        "NumTuneRuns": str(len(runs) - len(fin)),
        "NumDiverged": str(int((fin["status"] == "diverged").sum())) if len(fin) else "0",
        "NumStudies": str(len(prof.studies)), "ProfileName": esc(prof.name), "ProfileHash": prof.hash,
        "Commit": esc(git_commit()[:12]),
        "NumClaims": str(len(cl)),
        "Versions": esc(", ".join(f"{k} {v}" for k, v in versions().items())),
        "ComputeHours": num(float(runs["wall_s"].sum()) / 3600, 2) if "wall_s" in runs else "--",
        "Kernels": kernels(runs),
    }
    vals.update(cost(runs, f["jobs"]))
    for v in ("supported", "not supported", "inconclusive"):
        vals[f"NumClaims{_macro(v)}"] = str(int((cl["verdict"] == v).sum())) if len(cl) else "0"
    if len(c):
        init = c[(c["study"] == (prof.report or {}).get("init_study"))]
        for name, lab in (("Sigmoid", {"activation": "sigmoid", "init": "default"}),
                          ("Relu", {"activation": "relu", "init": "default"}),
                          ("ReluHe", {"activation": "relu", "init": "he"})):
            row = init[init["labels"].map(lambda s: _labels(s) == lab)]
            if len(row):
                vals[f"InitRatio{name}"] = num(row["log10_ratio_init_mean"].iloc[0], 1)
                vals.update(_underflow(row.iloc[0], f"InitRatio{name}"))
        acc = tspec(prof, "numbers")
        mit = c[c["study"] == acc.get("study")].copy()
        if len(mit):
            mit["depth"] = mit["labels"].map(lambda s: _labels(s).get("depth"))
            d = mit["depth"].max()
            vals["MlpDepth"] = str(int(d))
            for v in acc.get("variants") or []:
                r = mit[(mit["variant"] == v) & (mit["depth"] == d)]
                if len(r):
                    vals[f"Acc{_macro(v)}"] = num(r["value_mean"].iloc[0])
    vals.update(theory_gap(f["theory"]))
    vals.update(phase_numbers(f))
    lines = ["% generated by `vgbench table numbers`: every number quoted in the paper's prose"]
    lines += [f"\\providecommand{{\\vg{k}}}{{{v}}}" for k, v in vals.items()]
    return "\n".join(lines) + "\n"


def main(args) -> int:
    from vgbench import grid
    from vgbench.figures import load_frames
    if args.name not in NAMES:
        raise ConfigError(f"unknown table {args.name!r}; tables: {', '.join(NAMES)}")
    prof = grid.load_profile(args.profile)
    paths.require(args.results, *paths.drawn_from(args.name), profile=prof)
    text = globals()[args.name](load_frames(args.results, prof.report), prof)
    out = paths.table(args.name, args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        tmp.write_text(text)
    print(f"table {args.name}: {out}")
    return 0
