"""Statistics against hand-checkable fixtures and scipy / statsmodels directly."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from vgbench import stats


def test_cliffs_delta_by_hand():
    # pairs (x > y): 3>1, 3>2, 2>1 ; (x < y): none; ties: 2=2 -> (3 - 0) / 4
    assert stats.cliffs_delta([3, 2], [1, 2]) == pytest.approx(0.75)
    assert stats.cliffs_delta([1, 2], [1, 2]) == 0


def test_hedges_g_by_hand():
    x, y = [2.0, 4.0, 6.0], [1.0, 3.0, 5.0]   # diff 1, both sd 2 -> d = 0.5, J = 1 - 3/(4*6-9) = 0.8
    assert stats.hedges_g(x, y) == pytest.approx(0.5 * 0.8)


def test_welch_and_mwu_match_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, 7), rng.normal(1, 2, 5)
    t, p = stats.welch(x, y)
    ref = st.ttest_ind(x, y, equal_var=False)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-6, abs=0)
    u, pu = stats.mann_whitney(x, y)
    ref_u = st.mannwhitneyu(x, y, alternative="two-sided")
    assert (u, pu) == pytest.approx((ref_u.statistic, ref_u.pvalue), rel=1e-6, abs=0)


def test_welch_with_one_constant_sample_is_a_one_sample_t_test_and_warns_nothing():
    """Every seed of a baseline at chance (0.089) made scipy warn 'Precision loss ... Results may
    be unreliable' into stats.log nine times per default run; the numbers were right."""
    import warnings
    x, y = [0.432, 0.428, 0.432, 0.398, 0.415], [0.089] * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t, p = stats.welch(x, y)
    # by hand: y has no variance, so t = (mean x - 0.089) / (sd x / sqrt 5) on 4 degrees of freedom
    se = np.std(x, ddof=1) / np.sqrt(5)
    want = (np.mean(x) - 0.089) / se
    assert t == pytest.approx(want) and p == pytest.approx(2 * st.t.sf(want, 4))


def test_holm_matches_statsmodels_and_by_hand():
    p = [0.01, 0.04, 0.03, 0.5]
    # by hand: sorted 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08->0.09 (monotone), 0.5*1=0.5
    assert list(stats.holm(p)) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert list(stats.holm(p)) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert np.isnan(stats.holm([0.01, np.nan])[1])


def test_nemenyi_cd_matches_demsar_table():
    # Demsar 2006, Table 5: q_0.05 for k = 4 is 2.569 -> CD = 2.569 sqrt(4*5 / (6*10))
    assert stats.nemenyi_cd(4, 10) == pytest.approx(2.569 * math.sqrt(20 / 60), abs=2e-3)


def test_bootstrap_ci_contains_mean_and_degenerate_cases():
    lo, hi = stats.bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert lo <= 2.5 <= hi and lo >= 1 and hi <= 4
    assert stats.bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)
    assert all(math.isnan(v) for v in stats.bootstrap_ci([1.0]))


def _runs(rows):
    base = {"stage": "final", "status": "ok", "baseline_metric": "acc", "baseline_value": 0.1,
            "grad_ratio_init": 1e-3, "grad_ratio_final": 1e-2, "task": "mnist1d", "condition_id": "c"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_diverged_runs_count_as_chance_not_dropped():
    runs = _runs([{"study": "s", "variant": "a", "labels": "{}", "seed": i, "final.test/acc": 0.9,
                   "run_id": f"a{i}"} for i in range(3)] +
                 [{"study": "s", "variant": "a", "labels": "{}", "seed": 3, "final.test/acc": math.nan,
                   "status": "diverged", "run_id": "a3"}])
    o = stats.outcomes(runs)
    assert len(o) == 4 and o["value"].tolist() == [0.9, 0.9, 0.9, 0.1]
    c = stats.condition_table(o)
    assert c["n"].item() == 4 and c["divergence_rate"].item() == 0.25
    assert c["value_mean"].item() == pytest.approx(0.7)


def test_loss_tasks_score_is_minus_loss_and_failures_get_constant_predictor():
    runs = _runs([{"study": "s", "variant": "a", "labels": "{}", "seed": 0, "baseline_metric": "loss",
                   "baseline_value": 1 / 6, "final.test/loss": 0.05, "run_id": "x"},
                  {"study": "s", "variant": "a", "labels": "{}", "seed": 1, "baseline_metric": "loss",
                   "baseline_value": 1 / 6, "final.test/loss": math.inf, "run_id": "y"}])
    o = stats.outcomes(runs)
    assert o["score"].tolist() == pytest.approx([-0.05, -1 / 6])


def test_comparisons_family_and_direction():
    rows = []
    for v, acc in (("base", [0.5, 0.52, 0.48, 0.5, 0.51]), ("good", [0.8, 0.82, 0.79, 0.81, 0.8]),
                   ("same", [0.5, 0.49, 0.51, 0.52, 0.48])):
        rows += [{"study": "s", "variant": v, "labels": json.dumps({"depth": 4}), "seed": i,
                  "final.test/acc": a, "run_id": f"{v}{i}"} for i, a in enumerate(acc)]
    o = stats.outcomes(_runs(rows))
    c = stats.comparisons(o, {"s": {"good": "base", "same": "base"}})
    sc = c[c.quantity == "score"].set_index("variant")
    assert sc.loc["good", "diff"] == pytest.approx(0.804 - 0.502) and sc.loc["good", "significant"]
    assert not sc.loc["same", "significant"]
    assert list(sc["p_holm"]) == pytest.approx(list(multipletests(sc["p_welch"], method="holm")[1]), rel=1e-6, abs=0)
    fr, rk = stats.friedman(o, ["s"])
    assert fr["k"].item() == 3 and rk.set_index("variant").loc["good", "mean_rank"] == 1.0
