"""Claims as data: validation at load (exit 2 naming the bad name), the generic evaluator against
scipy and hand computations, no profile names in the package, a study added in YAML only."""
import ast
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from vgbench import claims, cli, grid, stats
from vgbench.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs/smoke.yaml"


def _profile(tmp_path, edit):
    raw = yaml.safe_load(SMOKE.read_text())
    edit(raw)
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def _claim(raw, i=2):
    return raw["claims"][i]


def _trainable(c):
    """The claim turned into a trainable-depth claim (its selectors leave the depth axis free)."""
    c.update(outcome="trainable", along="depth")
    for side in ("treatment", "control"):
        c[side].pop("depth", None)
    return c


@pytest.mark.parametrize("edit, words", [
    (lambda r: _claim(r).update(study="nope"), "unknown study 'nope'"),
    (lambda r: _claim(r)["treatment"].update(variant="relu_hee"), "unknown variant 'relu_hee'"),
    (lambda r: _claim(r)["treatment"].update(depth=7), "depth 7 is not a value of axis 'depth'"),
    (lambda r: _claim(r)["treatment"].update(widht=3), "unknown selector key 'widht'"),
    (lambda r: _claim(r).update(outcome="accuracy"), "unknown outcome 'accuracy'"),
    (lambda r: _claim(r).update(direction="up"), "unknown direction 'up'"),
    (lambda r: _claim(r).update(test="bayes"), "unknown test 'bayes'"),
    (lambda r: _claim(r).update(question="q9"), "unknown question 'q9'"),
    (lambda r: _claim(r).update(colour="red"), "unknown key 'colour'"),
    (lambda r: _claim(r).update(test="equivalence"), "margin > 0"),
    (lambda r: _claim(r).update(outcome="score_auc"), "needs `along: <axis>`"),
    (lambda r: _claim(r).update(test="rates"), "use outcome 'diverged'"),
    (lambda r: r["claims"].append(dict(_claim(r))), "claim ids repeat"),
    (lambda r: r["questions"][0].update(figure="nofig"), "unknown figure 'nofig'"),
    (lambda r: r["report"]["figures"]["rnn_seq_len"].update(study="rnn_taskz"), "unknown study 'rnn_taskz'"),
    (lambda r: r["report"]["figures"]["rnn_seq_len"]["variants"].append("gruu"), "unknown variant 'gruu'"),
    (lambda r: r["report"]["tables"].update(maintable={}), "unknown table 'maintable'"),
    (lambda r: r["report"]["figures"]["rnn_seq_len"].update(study=["rnn_tasks"]), "unknown study ['rnn_tasks']"),
    (lambda r: _claim(r).update(margin=0.02), "`margin` belongs to test 'equivalence' only"),
    (lambda r: _claim(r).update(threshold=0.1), "`threshold` belongs to outcome 'trainable' only"),
    (lambda r: _trainable(_claim(r)).update(threshold=-1), "threshold must be a number >= 0"),
    (lambda r: _trainable(_claim(r)).update(threshold="high"), "threshold must be a number >= 0"),
    (lambda r: _claim(r).update(paired="maybe"), "paired must be true or false"),
    (lambda r: _claim(r).update(family=["a"]), "family must be a name"),
    (lambda r: _claim(r).update(control=dict(_claim(r)["treatment"])), "treatment and control select the same runs"),
    (lambda r: _claim(r).update(id=["a"]), "'id' must be a non-empty string"),
    (lambda r: _claim(r).update(text=""), "'text' must be a non-empty string"),
])
def test_bad_claims_fail_at_load_with_exit_2(tmp_path, capsys, edit, words):
    p = _profile(tmp_path, edit)
    assert cli.main(["grid", str(p)]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_max_min_resolve_to_axis_values():
    prof = grid.load_profile(SMOKE)
    c = {c.id: c for c in prof.claims}
    assert c["cnn_deeper_worse"].treatment == {"variant": "cnn", "depth": 4}
    assert c["cnn_deeper_worse"].control == {"variant": "cnn", "depth": 2}


def test_no_profile_names_in_the_package():
    """No study or variant name of any shipped profile is a string literal in vgbench/ (names that
    are also vocabulary -- config keys and values, profile keys -- are allowed)."""
    from vgbench import config
    vocab = set(config.FIELDS) | {v for c in config.CHOICES.values() for v in c} | set(grid.PROFILE_KEYS) \
        | set(grid.STUDY_KEYS) | set(claims.CLAIM_KEYS) | {"base"}
    names = set()
    for prof in (REPO / "configs").glob("*.yaml"):
        for sname, s in (yaml.safe_load(prof.read_text()).get("studies") or {}).items():
            names.add(sname)
            names |= set((s.get("variants") or {}))
    names -= vocab
    assert {"mlp_mitigations", "relu_he", "init_depth", "rnn_tasks"} <= names
    found = []
    for py in (REPO / "vgbench").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{py.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, "profile names hard-coded in the package:\n" + "\n".join(found)


# --- the evaluator against scipy and hand computations ------------------------------------------

def _o(rows):
    base = {"stage": "final", "status": "ok", "baseline_metric": "acc", "baseline_value": 0.1,
            "grad_ratio_init": 1e-3, "grad_ratio_final": 1e-2, "task": "mnist1d", "condition_id": "c"}
    return stats.outcomes(pd.DataFrame([{**base, **r} for r in rows]))


def _mk(**kw):
    d = dict(id="c", question="q", text="t", study="s", treatment={"variant": "a"}, control={"variant": "b"},
             outcome="score")
    d.update(kw)
    return claims.Claim(**d)


A = [0.61, 0.72, 0.55, 0.68, 0.70]
B = [0.40, 0.52, 0.41, 0.45, 0.56]


def test_paired_claim_matches_scipy_ttest_rel():
    rows = [{"study": "s", "variant": v, "labels": "{}", "seed": i, "run_id": f"{v}{i}", "final.test/acc": x}
            for v, xs in (("a", A), ("b", B)) for i, x in enumerate(xs)]
    r = claims.evaluate(_o(rows), None, [_mk()]).iloc[0]
    d = np.subtract(A, B)
    assert r["paired"] and r["effect"] == pytest.approx(d.mean())
    assert r["p"] == pytest.approx(st.ttest_rel(A, B).pvalue, rel=1e-6, abs=0)
    boot = st.bootstrap((d,), np.mean, n_resamples=stats.N_BOOT, method="percentile", rng=np.random.default_rng(0))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((boot.confidence_interval.low, boot.confidence_interval.high))
    assert r["verdict"] == "supported"


def test_unpaired_claim_matches_welch_and_direction_flips_the_sign():
    rows = [{"study": "s", "variant": v, "labels": "{}", "seed": i + off, "run_id": f"{v}{i}", "final.test/acc": x}
            for v, xs, off in (("a", A, 0), ("b", B, 10)) for i, x in enumerate(xs)]
    r = claims.evaluate(_o(rows), None, [_mk(direction="less")]).iloc[0]
    assert not r["paired"]
    assert r["effect"] == pytest.approx(np.mean(B) - np.mean(A))
    assert r["p"] == pytest.approx(st.ttest_ind(A, B, equal_var=False).pvalue, rel=1e-6, abs=0)
    assert r["ci_high"] < 0 and r["verdict"] == "not supported"


def test_each_claim_cites_the_commits_and_kernels_of_exactly_its_runs():
    """The provenance columns count the runs of the claim's treatment and control only (not the
    study's other variants), per commit (first 7 characters, "-dirty" kept) and kernel set."""
    at = {"a": ["1111111aaaa", "1111111aaaa", "2222222bbbb-dirty", "1111111aaaa", None],
          "b": ["1111111aaaa"] * 5, "c": ["3333333cccc"] * 5}
    rows = [{"study": "s", "variant": v, "labels": "{}", "seed": i, "run_id": f"{v}{i}", "final.test/acc": x,
             "commit": at[v][i], "cpu_capability": "AVX512" if v == "a" else "AVX2"}
            for v, xs in (("a", A), ("b", B), ("c", B)) for i, x in enumerate(xs)]
    r = claims.evaluate(_o(rows), None, [_mk()]).iloc[0]
    assert r["commits"] == "1111111 (8); 2222222-dirty (1); unknown (1)"
    assert r["kernels"] == "AVX2 (5); AVX512 (5)"
    assert list(claims.evaluate(_o(rows), None, [_mk()]).columns[-2:]) == ["commits", "kernels"]


def test_holm_within_each_family_only():
    rows = [{"study": "s", "variant": v, "labels": "{}", "seed": i, "run_id": f"{v}{i}", "final.test/acc": x}
            for v, xs in (("a", A), ("b", B), ("c", [0.5, 0.51, 0.49, 0.52, 0.5])) for i, x in enumerate(xs)]
    cs = [_mk(id="1"), _mk(id="2", treatment={"variant": "c"}), _mk(id="3", family="other")]
    df = claims.evaluate(_o(rows), None, cs).set_index("id")
    fam = multipletests(df.loc[["1", "2"], "p"], method="holm")[1]
    assert list(df.loc[["1", "2"], "p_holm"]) == pytest.approx(list(fam), rel=1e-6, abs=0)
    assert df.loc["3", "p_holm"] == pytest.approx(df.loc["3", "p"], rel=1e-6, abs=0)  # alone in its family


@pytest.mark.parametrize("n, verdict", [(3, "inconclusive"), (6, "supported")])
def test_underflowed_gradient_ratio_is_censored_not_dropped(n, verdict):
    """Every run's ratio underflowed: each is censored at float32's floor, so all n values are equal.
    The one-sample t-test would call that p = 0 (t = inf); the evaluator uses the exact sign test, as
    for pairs that all differ alike: p = 2 * 0.5^n, 0.25 for 3 seeds (cannot decide), 0.031 for 6."""
    rows = [{"study": "s", "variant": "a", "seed": i, "run_id": f"r{i}", "final.test/acc": 0.1,
             "labels": json.dumps({"activation": "sigmoid"}), "grad_ratio_init": 0.0} for i in range(n)]
    c = _mk(treatment={"activation": "sigmoid"}, control=None, outcome="log10_ratio_init", direction="less")
    r = claims.evaluate(_o(rows), None, [c]).iloc[0]
    assert r["effect"] == pytest.approx(-math.log10(stats.FLOAT32_TINY))
    assert r["experiment"] == "s: activation sigmoid, against 0"   # once '... vs 0', as if comparing inits
    assert r["p"] == pytest.approx(st.binomtest(n, n, 0.5).pvalue, rel=1e-6, abs=0) and r["verdict"] == verdict
    # every run at the floor: the effect is censored, and the paper says so -- not that it is a bound
    # (it said 'a lower bound'; in float64 the default's 50-layer sigmoid nets sit ~2 decades above the floor)
    assert r["caveat"] == (f"{n} of {n} runs' first-layer gradient underflowed float32: the effect is censored "
                           f"(counted at float32's smallest ratio: not a bound, the true ratio can be a few decades larger)")
    assert r["caveat"] in claims.answer(None, claims.evaluate(_o(rows), None, [c]))


@pytest.mark.parametrize("first, verdict", [(1e-40, "supported"), (0.0, "inconclusive")])
def test_censoring_against_the_claimed_direction_cannot_support_it(first, verdict):
    """Treatment ratios 1e-2 but one run's first layer at `first`; control 1e-30: the effect looks
    positive either way, but a run censored at float32's floor (0.0) could lie anywhere below it,
    so 'treatment ratio greater' is undecidable -- while the same run measured at 1e-40 decides it."""
    rows = [{"study": "s", "variant": v, "seed": i, "run_id": f"{v}{i}", "final.test/acc": 0.1, "labels": "{}",
             "grad_ratio_init": (first if i == 0 else 1e-2) if v == "a" else 1e-30 * (1 + i / 10)}
            for v in "ab" for i in range(10)]
    r = claims.evaluate(_o(rows), None, [_mk(outcome="log10_ratio_init", direction="greater")]).iloc[0]
    assert r["effect"] > 15 and r["p_holm"] < 0.05 and r["verdict"] == verdict
    if verdict == "inconclusive":
        assert r["note"] == "1 of 20 runs' first-layer gradient underflowed float32, against the claim: cannot decide it"
    else:
        assert pd.isna(r["note"]) and pd.isna(r["caveat"])


def test_rates_claim_uses_fisher_on_divergence_counts():
    rows = [{"study": "s", "variant": v, "labels": "{}", "seed": i, "run_id": f"{v}{i}", "final.test/acc": 0.1,
             "status": status} for v, status in (("b", "diverged"), ("a", "ok")) for i in range(5)]
    c = _mk(outcome="diverged", direction="less", test="rates")
    r = claims.evaluate(_o(rows), None, [c]).iloc[0]
    assert r["effect"] == 1.0 and r["p"] == pytest.approx(st.fisher_exact([[0, 5], [5, 0]]).pvalue, rel=1e-6, abs=0)
    assert r["verdict"] == "supported"
    # the same 5/5 vs 0/5 among 20 claims of one family: inconclusive for lack of seeds, said so
    many = [c] + [_mk(id=f"x{i}", outcome="diverged", direction="less", test="rates") for i in range(19)]
    df = claims.evaluate(_o(rows), None, many)
    assert df.iloc[0]["verdict"] == "inconclusive" and df.iloc[0]["note"].startswith("5/5 vs 0/5")


def test_rates_claim_without_control_divergence_is_inconclusive():
    rows = [{"study": "s", "variant": v, "labels": "{}", "seed": i, "run_id": f"{v}{i}", "final.test/acc": 0.5}
            for v in ("a", "b") for i in range(5)]
    r = claims.evaluate(_o(rows), None, [_mk(outcome="diverged", direction="less", test="rates")]).iloc[0]
    assert r["verdict"] == "inconclusive" and r["note"] == "control never diverged"


def test_along_axis_outcomes_by_hand():
    """score_auc: per seed, the mean score over depths; trainable: the deepest depth whose score
    beats chance (0.1) by the threshold (0.05)."""
    acc = {("a", 2): [0.8, 0.8], ("a", 4): [0.6, 0.5], ("a", 8): [0.3, 0.12],
           ("b", 2): [0.7, 0.6], ("b", 4): [0.12, 0.2], ("b", 8): [0.1, 0.1]}
    rows = [{"study": "s", "variant": v, "labels": json.dumps({"depth": d}), "seed": i, "run_id": f"{v}{d}{i}",
             "final.test/acc": x} for (v, d), xs in acc.items() for i, x in enumerate(xs)]
    o = _o(rows)
    auc = claims.samples(o, None, _mk(outcome="score_auc", along="depth"), {"variant": "a"})
    assert sorted(auc.to_numpy()) == pytest.approx(sorted([(0.8 + 0.6 + 0.3) / 3, (0.8 + 0.5 + 0.12) / 3]))
    tr = claims.samples(o, None, _mk(outcome="trainable", along="depth"), {"variant": "a"})
    assert sorted(tr.to_numpy()) == [4.0, 8.0]      # seed 1 at depth 8: 0.12 - 0.1 < 0.05
    tr = claims.samples(o, None, _mk(outcome="trainable", along="depth"), {"variant": "b"})
    assert sorted(tr.to_numpy()) == [2.0, 4.0]


def test_dead_fraction_outcome_reads_the_last_measurement():
    rows = [{"study": "s", "variant": "a", "labels": "{}", "seed": i, "run_id": f"a{i}", "final.test/acc": 0.5}
            for i in range(2)]
    curves = pd.DataFrame([(f"a{i}", "dead", step, l, v) for i in range(2) for step, l, v in
                           ((0, 0, 0.9), (0, 1, 0.9), (10, 0, 0.2), (10, 1, 0.4 + i))],
                          columns=["run_id", "kind", "step", "index", "value"])
    v = claims.per_run(_o(rows), curves, "dead_fraction")
    assert v.tolist() == pytest.approx([0.3, 0.8])


@pytest.mark.parametrize("row,expected", [
    ({"p_holm": 0.01, "effect": 0.2, "ci_low": 0.1, "ci_high": 0.3}, "supported"),
    ({"p_holm": 0.01, "effect": -0.2, "ci_low": -0.3, "ci_high": -0.1}, "not supported"),
    ({"p_holm": 0.30, "effect": 0.05, "ci_low": -0.1, "ci_high": 0.2}, "inconclusive"),
    ({"p_holm": 0.30, "effect": 0.0, "ci_low": -0.01, "ci_high": 0.01, "kind": "equivalence", "margin": 0.02},
     "supported"),
    ({"p_holm": 0.01, "effect": -0.1, "ci_low": -0.15, "ci_high": -0.05, "kind": "equivalence", "margin": 0.02},
     "not supported"),
])
def test_verdicts(row, expected):
    assert claims.verdict(row) == expected


def test_answer_sentence_states_effect_ci_p_and_seeds():
    rows = pd.DataFrame([{"claim": "Batch norm helps", "verdict": "supported", "effect": 0.34, "ci_low": 0.28,
                          "ci_high": 0.39, "p_holm": 0.0004, "n": 5, "n_base": 5, "kind": "superiority",
                          "paired": True, "quantity": "score", "experiment": "s: bn vs base", "note": None}])
    text = claims.answer(None, rows)
    assert text.startswith("Supported: Batch norm helps") and "0.34 [0.28, 0.39]" in text
    assert "p_Holm < 0.001" in text and "5 v 5 paired seeds" in text


@pytest.mark.parametrize("lo, hi, where", [(0.005, 0.012, "inside"), (-0.01, 0.03, "across"), (0.03, 0.05, "outside")])
def test_equivalence_answer_states_the_margin_not_p(lo, hi, where):
    """An equivalence claim is decided by its CI against the margin; its t-test p says nothing about it."""
    rows = pd.DataFrame([{"claim": "c changes little", "verdict": "supported", "effect": (lo + hi) / 2,
                          "ci_low": lo, "ci_high": hi, "p_holm": 0.004, "n": 10, "n_base": 10,
                          "kind": "equivalence", "margin": 0.02, "paired": True, "quantity": "score_auc",
                          "experiment": "s: c vs base", "note": None}])
    text = claims.answer(None, rows)
    assert f"CI {where} the equivalence margin +-0.02" in text and "p_Holm" not in text


def test_constant_paired_difference_uses_the_exact_sign_test():
    """3 seeds that all differ by exactly 4 (e.g. a trainable depth): p = 2 / 2^3, not 0."""
    rows = [{"study": "s", "variant": v, "labels": "{}", "seed": i, "run_id": f"{v}{i}", "final.test/acc": x}
            for v, x in (("a", 0.9), ("b", 0.5)) for i in range(3)]
    r = claims.evaluate(_o(rows), None, [_mk()]).iloc[0]
    assert r["paired"] and r["p"] == pytest.approx(0.25, rel=1e-6, abs=0) and r["verdict"] == "inconclusive"


def test_quoted_and_tabled_ratios_are_bounds_where_runs_underflowed():
    """The prose quotes log10 first/last ratios of the init study and the grad_ratios table gives
    them per variant; a run whose first-layer gradient underflowed float32 makes the mean an upper
    bound (the table once printed -24.30 [-38.48, -10.16] for adam with one run of three at the
    floor, unmarked). Counted here by hand: condition s has 2 of 3 runs at 0 at init, 1 of 3 at the
    end; condition r none."""
    from vgbench import tables
    rows = [{"variant": v, "labels": '{"depth": 8}', "seed": i, "run_id": f"{v}{i}", "final.test/acc": 0.5,
             "condition_id": v, "grad_ratio_init": gi, "grad_ratio_final": gf}
            for v, ratios in (("s", [(0.0, 1e-3), (0.0, 0.0), (1e-40, 1e-3)]), ("r", [(1e-3, 1e-2), (2e-3, 1e-2), (1e-3, 1e-3)]))
            for i, (gi, gf) in enumerate(ratios)]
    o = _o([{**r, "study": "m"} for r in rows])
    c = stats.condition_table(o).set_index("variant")
    comp = stats.comparisons(o, {"m": {"s": "r", "r": "s"}}).set_index(["variant", "quantity"])
    assert comp.loc[("s", "log10_ratio_init"), ["censored", "censored_base"]].tolist() == [2, 0]
    assert comp.loc[("r", "log10_ratio_init"), ["censored", "censored_base"]].tolist() == [0, 2]
    assert comp.loc[("s", "score"), ["censored", "censored_base"]].tolist() == [0, 0]
    assert tables._underflow(c.loc["s"], "InitRatioSigmoid") == {
        "InitRatioSigmoidNote": " (censored: its first-layer gradient underflowed float32 in 2 of 3 runs, whose "
                                "ratio counts as float32's smallest value; the true ratio can be a few decades larger)"}
    assert tables._underflow(c.loc["r"], "InitRatioRelu") == {"InitRatioReluNote": ""}
    cells = [tables._ratio_cell(c.loc[v], q) for v in "sr" for q in ("log10_ratio_init", "log10_ratio_final")]
    assert cells[0].endswith("(2/3 u.)}") and cells[1].endswith("(1/3 u.)}")
    assert "u.)" not in cells[2] + cells[3]
    mean = np.mean(np.log10([stats.FLOAT32_TINY, stats.FLOAT32_TINY, 1e-40]))  # the floor, twice, and -40
    assert cells[0].startswith(f"{mean:.2f} ")   # no '<=': a censored mean is not a bound


def test_claims_that_all_lack_runs_are_inconclusive_not_a_crash():
    """One seed per arm for every claim (a profile with seeds: 1): no claim gets a test, and the
    evaluator once failed with KeyError 'effect' -- the whole stats stage with it."""
    rows = [{"study": "s", "variant": v, "labels": "{}", "seed": 0, "run_id": v, "final.test/acc": 0.5} for v in "ab"]
    df = claims.evaluate(_o(rows), None, [_mk(), _mk(id="d", test="equivalence", margin=0.02)])
    assert list(df["verdict"]) == ["inconclusive"] * 2 and list(df["note"]) == ["too few runs"] * 2
    assert df["effect"].isna().all() and "(too few runs)" in claims.answer(None, df)

