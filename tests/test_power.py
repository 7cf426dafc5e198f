"""`vgbench power`: the smallest p each claim's test can give with its seeds, against hand values."""
from math import comb
from pathlib import Path

import pandas as pd
import re

import pytest
import yaml

from vgbench import cli, grid, power

REPO = Path(__file__).resolve().parents[1]


def _table(tmp_path, seeds):
    """The smoke profile with `seeds` seeds in mlp_mitigations and explosion, plus a claim whose
    selector leaves the depth axis free (one unit per seed and depth)."""
    raw = yaml.safe_load((REPO / "configs/smoke.yaml").read_text())
    for s in ("mlp_mitigations", "explosion"):
        raw["studies"][s]["seeds"] = seeds
    raw["claims"].append({"id": "free_depth", "question": "mitigations", "text": "t", "study": "mlp_mitigations",
                          "treatment": {"variant": "batch_norm"}, "control": {"variant": "baseline"},
                          "outcome": "score"})
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    prof = grid.load_profile(p)
    return prof, power.table(prof).set_index("claim"), p


@pytest.mark.parametrize("seeds", [5, 8])
def test_floors_are_fisher_and_sign_test_by_hand(tmp_path, seeds):
    prof, t, _ = _table(tmp_path, seeds)
    # every control seed diverged, no treatment seed did: p = 2 / C(2n, n) (two-sided Fisher)
    r = t.loc["clip_high_lr"]
    assert r["p_floor"] == pytest.approx(2 / comb(2 * seeds, seeds), rel=1e-9)
    m = sum(c.family == r["family"] for c in prof.claims)
    assert r["m"] == m and r["holm_floor"] == pytest.approx(min(1, m * 2 / comb(2 * seeds, seeds)))
    # a trainable depth that moves by the same grid step in every pair: sign test 2 / 2^n
    r = t.loc["relu_he_trainable"]
    assert r["p_floor"] == pytest.approx(2 / 2 ** seeds)
    assert r["verdict"] == ("can never be supported" if seeds == 5 else "can be supported")
    assert pd.isna(t.loc["batch_norm_helps", "p_floor"]) and t.loc["batch_norm_helps", "verdict"] == "no floor"


@pytest.mark.parametrize("seeds", [3, 10])
def test_a_one_sample_gradient_ratio_has_the_sign_test_floor_where_every_run_underflows(tmp_path, seeds):
    """Every run of a one-sample log10-ratio claim censored at float32's floor: all values alike,
    the evaluator's sign test gives 2 / 2^n -- 0.25 with 3 seeds (default's init study), 0.002 with 10;
    not 'can never be supported': runs that do not underflow can still decide it."""
    raw = yaml.safe_load((REPO / "configs/smoke.yaml").read_text())
    raw["studies"]["init_depth"]["seeds"] = seeds
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    prof = grid.load_profile(p)
    (cid,) = [c.id for c in prof.claims if c.outcome == "log10_ratio_init" and c.control is None]
    r = power.table(prof).set_index("claim").loc[cid]
    assert r["p_floor"] == pytest.approx(2 / 2 ** seeds) and "where every run underflows float32" in r["test"]
    assert r["m"] < 25 and r["verdict"] == ("cannot be supported where every run underflows" if seeds == 3
                                           else "can be supported")
    assert power.warning(prof, str(p)) is None or cid not in power.warning(prof, str(p))


def test_units_count_the_axes_a_selector_leaves_free(tmp_path):
    prof, _, _ = _table(tmp_path, 5)
    c = {c.id: c for c in prof.claims}
    study = prof.studies["mlp_mitigations"]
    assert power.units(c["batch_norm_helps"], study, c["batch_norm_helps"].treatment) == 5  # depth: max
    assert power.units(c["free_depth"], study, c["free_depth"].treatment) == 5 * len(study.axes["depth"])
    assert power.units(c["batch_norm_area"], study, c["batch_norm_area"].treatment) == 5  # along depth


def test_power_command_names_the_claims_that_cannot_be_supported(tmp_path, capsys):
    _, _, p = _table(tmp_path, 5)
    assert cli.main(["power", str(p)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("relu_he_trainable"))
    assert "0.062" in line and "can never be supported" in line
    assert "1 can never be supported" in next(l for l in out.splitlines() if " claims, alpha " in l)


def test_power_command_names_the_claims_tuned_on_one_seed(tmp_path, capsys):
    """A learning rate selected on one tuning seed moved a verdict twice (another CPU's rounding; the
    redesigned default's he_with_relu): the command names the claims whose study does that."""
    raw = yaml.safe_load((REPO / "configs/smoke.yaml").read_text())
    tuned = {n for n, s in raw["studies"].items() if s.get("lr_grid")}
    on_tuned = [c["id"] for c in raw["claims"] if c["study"] in tuned]   # in the profile's order
    assert tuned and on_tuned
    for seeds in ([100], [100, 101]):
        raw["tune_seeds"] = seeds
        for s in raw["studies"].values():
            s.pop("tune_seeds", None)
        p = tmp_path / f"p{len(seeds)}.yaml"
        p.write_text(yaml.safe_dump(raw, sort_keys=False))
        assert cli.main(["power", str(p)]) == 0
        out = capsys.readouterr().out
        line = [l for l in out.splitlines() if "one tuning seed" in l]
        if len(seeds) == 1:
            assert len(line) == 1 and line[0].startswith(f"{len(on_tuned)} claim(s)")
            assert all(c in line[0] for c in on_tuned[:4])
        else:
            assert not line


@pytest.mark.parametrize("seeds", [5, 8])
def test_warning_names_exactly_the_claims_that_can_never_be_supported(tmp_path, seeds):
    prof, _, p = _table(tmp_path, seeds)
    w = power.warning(prof, str(p))
    if seeds == 5:
        assert "1 claim(s)" in w and "relu_he_trainable" in w and str(p) in w
    else:
        assert w is None


def test_pipeline_warns_before_any_run_when_a_claim_can_never_be_supported(tmp_path):
    from conftest import snake
    _, _, p = _table(tmp_path, 5)
    err = snake(tmp_path, "-n", "--configfile", str(p)).stderr
    line = [l for l in err.splitlines() if "can never be supported" in l]
    assert len(line) == 1 and "relu_he_trainable" in line[0]


# --- sizing from a pilot (vgbench power PROFILE --pilot RESULTS) ------------------------------------

@pytest.mark.parametrize("d,n,alpha", [(0.5, 10, 0.05), (1.2, 6, 0.0125), (0.3, 40, 0.025), (2.0, 3, 0.05)])
def test_t_power_matches_statsmodels(d, n, alpha):
    from statsmodels.stats.power import TTestIndPower, TTestPower
    assert power._t_power(d, n, alpha) == pytest.approx(
        TTestPower().power(effect_size=d, nobs=n, alpha=alpha, alternative="two-sided"), rel=1e-6)
    assert power._t_power(d, n, alpha, two_sample=True) == pytest.approx(
        TTestIndPower().power(effect_size=d, nobs1=n, ratio=1.0, alpha=alpha, alternative="two-sided"), rel=1e-6)


@pytest.mark.parametrize("mean,sd,n,margin", [(0.01, 0.02, 10, 0.02), (0.03, 0.013, 30, 0.02), (0.0, 0.05, 8, 0.02)])
def test_equivalence_power_against_simulated_t_intervals(mean, sd, n, margin):
    """The evaluator decides an equivalence claim when the CI lies inside or outside the margin;
    reference: that decision on 20000 simulated samples with t intervals."""
    import numpy as np
    from scipy import stats as st
    x = np.random.default_rng(0).normal(mean, sd, (20000, n))
    m, hw = x.mean(1), st.t.ppf(0.975, n - 1) * x.std(1, ddof=1) / np.sqrt(n)
    decided = ((m - hw > -margin) & (m + hw < margin)) | (m - hw > margin) | (m + hw < -margin)
    assert power._equivalence_power(mean, sd, n, margin) == pytest.approx(decided.mean(), abs=0.02)


def test_rates_power_by_hand():
    # every treatment run diverges, no control run does: Fisher's p = 2 / C(2n, n)
    assert power._rates_power(1.0, 0.0, 3, 0.05) == 0.0            # 2 / 20 = 0.1
    assert power._rates_power(1.0, 0.0, 4, 0.05) == 1.0            # 2 / 70 = 0.029
    # one run each: the test can never be significant
    assert power._rates_power(0.9, 0.1, 1, 0.05) == 0.0


def test_sizing_from_a_pilot_against_hand_values(tmp_path, capsys):
    """A pilot of 6 seeds with known scores: the effect and sd are numpy's, the seeds are the
    smallest n whose power (statsmodels) reaches 0.8 at alpha / m, at the sd and at its upper 80 %
    chi-square limit; a claim whose arms the pilot lacks says so."""
    import json
    import math
    import numpy as np
    from scipy import stats as st
    from statsmodels.stats.power import TTestPower
    prof_f = tmp_path / "p.yaml"
    prof_f.write_text(yaml.safe_dump({
        "profile": "p", "defaults": {"task": "mnist1d", "batch_size": 100},
        "studies": {"s": {"base": {"model": "mlp", "depth": 2, "width": 8, "steps": 10, "lr": 0.1},
                          "variants": {"a": {}, "b": {"activation": "relu"}}, "seeds": 12},
                    "other": {"base": {"model": "mlp", "depth": 2, "width": 8, "steps": 10, "lr": 0.1}, "seeds": 5},
                    "s_again": {"base": {"model": "mlp", "depth": 2, "width": 8, "steps": 10, "lr": 0.1},
                                "variants": {"a": {}, "b": {"activation": "relu"}}, "seeds": 30}},
        "questions": [{"id": "q", "question": "?"}],
        "claims": [
            {"id": "sup", "question": "q", "text": "t", "study": "s", "family": "f",
             "treatment": {"variant": "b"}, "control": {"variant": "a"}, "outcome": "score"},
            {"id": "eq", "question": "q", "text": "t", "study": "s", "family": "f", "test": "equivalence",
             "margin": 0.05, "treatment": {"variant": "b"}, "control": {"variant": "a"}, "outcome": "score"},
            {"id": "absent", "question": "q", "text": "t", "study": "other", "treatment": {}, "outcome": "score"},
            {"id": "again", "question": "q", "text": "t", "study": "s_again", "family": "g",
             "treatment": {"variant": "b"}, "control": {"variant": "a"}, "outcome": "score"}]}))
    prof = grid.load_profile(prof_f)
    a = [0.50, 0.52, 0.47, 0.55, 0.49, 0.51]
    diff = [0.03, 0.01, 0.06, -0.01, 0.04, 0.02]
    rows = [{"run_id": f"{v}{s}", "study": "s", "variant": v, "stage": "final", "seed": s,
             "labels": json.dumps({}), "status": "ok", "baseline_metric": "acc", "baseline_value": 0.1,
             "final.test/acc": acc, "grad_ratio_init": 0.5, "grad_ratio_final": 0.5}
            for s in range(6) for v, acc in (("a", a[s]), ("b", a[s] + diff[s]))]
    (tmp_path / "pilot/aggregate").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "pilot/aggregate/runs.parquet")
    for name in ("curves", "jobs"):   # an aggregate's other tables (no claim here reads them)
        pd.DataFrame({"run_id": pd.Series(dtype=str)}).to_parquet(tmp_path / f"pilot/aggregate/{name}.parquet")
    t = power.sizing(prof, tmp_path / "pilot").set_index("claim")
    d = np.array(diff)
    sd, sd_hi = d.std(ddof=1), d.std(ddof=1) * math.sqrt(5 / st.chi2.ppf(0.2, 5))
    r = t.loc["sup"]
    assert (r["pilot_n"], r["m"], r["seeds"]) == (6, 2, 12)
    assert r["effect"] == pytest.approx(d.mean()) and r["sd"] == pytest.approx(sd)
    need = lambda s_: math.ceil(TTestPower().solve_power(effect_size=d.mean() / s_, power=0.8, alpha=0.025))  # noqa: E731
    assert (r["n"], r["n_cautious"]) == (need(sd), need(sd_hi))
    assert r["n_cautious"] > r["n"]
    e = t.loc["eq"]   # |effect| 0.025 with margin 0.05: decided (inside) with more seeds
    assert 2 <= e["n"] <= e["n_cautious"] < power.MAX_SEEDS
    assert power._equivalence_power(d.mean(), sd, int(e["n"]), 0.05) >= 0.8 > \
        power._equivalence_power(d.mean(), sd, int(e["n"]) - 1, 0.05)
    assert t.loc["absent", "pilot_n"] == 0 and "no pilot runs" in t.loc["absent", "note"]
    assert cli.main(["power", str(prof_f), "--pilot", str(tmp_path / "pilot")]) == 0
    out = capsys.readouterr().out
    assert "n (sd at 80%)" in out and "no pilot runs" in out
    assert cli.main(["power", str(prof_f), "--pilot", str(tmp_path / "nowhere")]) == 2
    assert "--pilot" in capsys.readouterr().err
    # a redesign under a new name, sized from the old study's runs (--study NEW=OLD): the same
    # effect and sd, sized at alpha 0.05 (its own family); once for each study it stands for
    assert t.loc["again", "pilot_n"] == 0
    t2 = power.sizing(prof, tmp_path / "pilot", {"s_again": "s", "other": "s"}).set_index("claim")
    g = t2.loc["again"]
    assert (g["pilot_n"], g["m"], g["seeds"]) == (6, 1, 30)
    assert g["effect"] == pytest.approx(d.mean()) and g["sd"] == pytest.approx(sd)
    need1 = lambda s_: math.ceil(TTestPower().solve_power(effect_size=d.mean() / s_, power=0.8, alpha=0.05))  # noqa: E731
    assert (g["n"], g["n_cautious"]) == (need1(sd), need1(sd_hi))
    assert t2.loc["sup", "effect"] == pytest.approx(d.mean())          # the old study still answers its own
    assert cli.main(["power", str(prof_f), "--pilot", str(tmp_path / "pilot"), "--study", "s_again=s"]) == 0
    assert re.search(r"again +1 +6 ", capsys.readouterr().out)
    for bad, words in (("nope=s", "'nope' is not a study of p"), ("s_again=nope", "no runs of study 'nope'")):
        assert cli.main(["power", str(prof_f), "--pilot", str(tmp_path / "pilot"), "--study", bad]) == 2
        assert words in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:   # argparse's own exit
        cli.main(["power", str(prof_f), "--pilot", str(tmp_path / "pilot"), "--study", "s_again"])
    assert e.value.code == 2 and "--study: must be NEW=OLD" in capsys.readouterr().err


def test_fisher_significance_table_equals_scipy_table_by_table():
    """The sizing's vectorised Fisher test against scipy.stats.fisher_exact on every table."""
    from scipy import stats as st
    for n in (1, 4, 9, 13):
        for alpha in (0.05, 0.0125):
            sig = power._fisher_significant(n, alpha)
            for k1 in range(n + 1):
                for k0 in range(n + 1):
                    assert sig[k1, k0] == (st.fisher_exact([[k1, n - k1], [k0, n - k0]]).pvalue < alpha), (n, k1, k0)


def test_sizing_from_a_renamed_study_keeps_only_the_pilot_runs_of_the_settings_it_fixes(tmp_path):
    """--study NEW=OLD where OLD ran two tasks and NEW fixes one: the sizing read both tasks' runs
    (the default's rnn_tasks standing for a temporal-order-only study mixed in the adding runs).
    The pilot's runs of the other task must drop out, per variant (a variant's own model is not
    filtered by the base's), while a setting OLD held at another value throughout (a longer budget:
    the redesign) keeps its runs."""
    import json
    import numpy as np
    base = {"model": "mlp", "depth": 2, "width": 8, "steps": 10, "lr": 0.1}
    prof_f = tmp_path / "p.yaml"
    prof_f.write_text(yaml.safe_dump({
        "profile": "p", "defaults": {"task": "mnist1d", "batch_size": 100},
        "studies": {"one_task": {"base": {**base, "task": "digits", "steps": 50},
                                 "variants": {"a": {}, "b": {"model": "cnn"}}, "seeds": 30}},
        "questions": [{"id": "q", "question": "?"}],
        "claims": [{"id": "c", "question": "q", "text": "t", "study": "one_task", "family": "f",
                    "treatment": {"variant": "b"}, "control": {"variant": "a"}, "outcome": "score"}]}))
    prof = grid.load_profile(prof_f)
    d_digits, d_mnist = [0.05, 0.07, 0.02, 0.06, 0.04], [-0.3, -0.1, -0.2, -0.4, -0.25]
    rows = [{"run_id": f"{v}{task}{s}", "study": "old", "variant": v, "stage": stage, "seed": s, "task": task,
             "model": "mlp" if v == "a" else "cnn", "steps": 10, "labels": json.dumps({}), "status": "ok",
             "baseline_metric": "acc", "baseline_value": 0.1, "final.test/acc": 0.5 + (v == "b") * d[s],
             "grad_ratio_init": 0.5, "grad_ratio_final": 0.5}
            for s in range(5) for v in ("a", "b") for task, d in (("digits", d_digits), ("mnist1d", d_mnist))
            for stage in ("final", "tune")]
    (tmp_path / "pilot/aggregate").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "pilot/aggregate/runs.parquet")
    for name in ("curves", "jobs"):
        pd.DataFrame({"run_id": pd.Series(dtype=str)}).to_parquet(tmp_path / f"pilot/aggregate/{name}.parquet")
    r = power.sizing(prof, tmp_path / "pilot", {"one_task": "old"}).set_index("claim").loc["c"]
    assert r["pilot_n"] == 5
    assert r["effect"] == pytest.approx(np.mean(d_digits)) and r["sd"] == pytest.approx(np.std(d_digits, ddof=1))


@pytest.mark.parametrize("paired", [True, False])
def test_bootstrap_power_is_the_share_of_resamples_the_evaluators_own_test_decides(monkeypatch, paired):
    """_boot_power at n: of the same resamples of the pilot's units (rng seeded by n), the share whose
    p from the evaluator's test (claims.test, with its exact sign test for alike pairs) is below
    alpha. A zero-inflated pilot (most seeds no difference) makes alike draws common, so a dropped
    special case shows."""
    import numpy as np
    from vgbench import claims
    monkeypatch.setattr(power, "BOOT_DRAWS", 150)
    monkeypatch.setattr(claims, "ALPHA", 0.05)
    c = claims.Claim(id="c", question="q", text="t", study="s", treatment={"variant": "a"},
                     control={"variant": "b"}, outcome="score", paired=paired)
    x = np.array([0.0] * 5 + [0.1] * 4 + [0.13])
    y = np.array([0.0] * 8 + [0.02, 0.05])
    for n in (3, 6, 9):
        rng = np.random.default_rng(n)
        a = rng.choice(x, size=(power.BOOT_DRAWS, n))
        b = None if paired else rng.choice(y, size=(power.BOOT_DRAWS, n))
        decided = 0
        for i in range(power.BOOT_DRAWS):
            xs = pd.Series(a[i])
            ys = pd.Series(0.0, index=range(n)) if paired else pd.Series(b[i], index=range(100, 100 + n))
            decided += claims.test(c, xs, ys)["p"] < 0.05
        want = decided / power.BOOT_DRAWS
        got = power._boot_power(x, None if paired else y, n, 0.05, paired)
        assert got == want, (n, got, want)


def test_bootstrap_sizing_agrees_with_the_normal_approximation_on_a_normal_pilot_and_is_the_smallest_n():
    """A large normal pilot: resampling it is (nearly) sampling the normal, so the simulated seed
    count is the noncentral-t one within the simulation's error; and it is the smallest n whose
    simulated power reaches POWER."""
    import numpy as np
    d = np.random.default_rng(7).normal(0.5, 1.0, 400)
    d = 0.5 + (d - d.mean()) / d.std(ddof=1)          # mean 0.5, sd 1 exactly
    n_t = power._smallest(lambda n: power._t_power(0.5, n, 0.05))
    n_b = power._smallest(lambda n: power._boot_power(d, None, n, 0.05, True))
    assert abs(n_b - n_t) <= 2, (n_b, n_t)
    assert power._boot_power(d, None, n_b, 0.05, True) >= power.POWER > power._boot_power(d, None, n_b - 1, 0.05, True)
