"""Mean-field theory: the issue's reference values and a measurement."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vgbench import theory
from vgbench.config import ACTIVATIONS, load
from vgbench.data import load_task
from vgbench.models import build_model


def test_reference_values():
    assert theory.chi("relu", *theory.weight_variance("he", 100, 100)[:1], q=0.7) == pytest.approx(1.0)
    assert theory.expect(lambda z: theory.dphi("sigmoid", z) ** 2, 1.0) == pytest.approx(0.0448, abs=2e-4)
    assert theory.expect(lambda z: theory.dphi("tanh", z) ** 2, 1.0) == pytest.approx(0.464, abs=1e-3)


def test_quadrature_matches_monte_carlo():
    z = np.random.default_rng(0).normal(0, math.sqrt(2.0), 2_000_000)
    for act in ACTIVATIONS:
        mc = np.mean(theory.phi(act, z) ** 2)
        assert theory.expect(lambda u: theory.phi(act, u) ** 2, 2.0) == pytest.approx(mc, rel=0.01), act


def test_derivatives_match_autograd():
    z = torch.linspace(-4, 4, 81, dtype=torch.float64, requires_grad=True)
    torch_fns = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu, "elu": F.elu, "selu": F.selu,
                 "gelu": F.gelu, "softsign": F.softsign, "leaky_relu": F.leaky_relu,
                 "prelu": lambda x: F.prelu(x, torch.tensor([0.25], dtype=torch.float64))}
    for act, f in torch_fns.items():
        (g,) = torch.autograd.grad(f(z).sum(), z)
        ours = theory.dphi(act, z.detach().numpy())
        mask = z.detach().numpy() != 0
        assert np.allclose(ours[mask], g.numpy()[mask], atol=1e-6), act


@pytest.mark.parametrize("act,init", [("sigmoid", "default"), ("tanh", "xavier"), ("relu", "he"), ("relu", "default")])
def test_prediction_matches_a_measured_deep_net(act, init):
    depth, width = 20, 256
    cfg = load({"depth": depth, "width": width, "activation": act, "init": init})
    task = load_task(cfg)
    measured = []
    for seed in range(3):
        net = build_model(load({**cfg.to_dict(), "seed": seed}), task)
        out = net(task.x["train"][:500], capture=True)
        F.cross_entropy(out, task.y["train"][:500]).backward()
        s = [h.grad.norm().item() for h in net.captured["h"][:-1]]
        measured.append(math.log10(s[0] / s[-1]))
    pred = theory.predict(act, init, depth, width, in_dim=40)["log10_signal"][0]
    # within 15 % of the predicted orders of magnitude, or half a decade where it is ~flat
    assert np.mean(measured) == pytest.approx(pred, rel=0.15, abs=0.5)


@pytest.mark.parametrize("q", [0.01, 1.0, 30.0, 256.0, 5000.0])
def test_expectations_at_any_variance_match_monte_carlo(q):
    z = np.random.default_rng(1).normal(0, math.sqrt(q), 4_000_000)
    for act in ("tanh", "sigmoid", "softsign", "relu"):
        mc = np.mean(theory.dphi(act, z) ** 2)
        assert theory.expect(lambda u: theory.dphi(act, u) ** 2, q) == pytest.approx(mc, rel=0.02), (act, q)


def test_theory_gap_macros_name_the_worst_pair():
    import pandas as pd
    from vgbench.tables import theory_gap
    th = pd.DataFrame({"activation": ["relu", "relu", "gelu", "tanh_x"], "init": ["he", "he", "he", "xavier"],
                       "layer": [0, 1, 0, 0], "slope_measured": [0.0, 0.0, 0.02, 0.01],
                       "slope_predicted": [0.001, 0.001, 0.13, 0.01]})
    v = theory_gap(th)
    assert v["TheoryMaxGap"] == "0.110" and v["TheoryWorst"] == r"gelu with he init"
    assert v["TheoryMedianGap"] == "0.001"
    assert theory_gap(pd.DataFrame())["TheoryWorst"] == "--"


# --- phase diagram: fixed points and depth scales against the literature and hand values -----

def test_tanh_critical_point_matches_the_literature():
    """Schoenholz et al. 2017 / Poole et al. 2016: tanh at sigma_b^2 = 0.05 is critical at sigma_w^2 ~ 1.76;
    at sigma_b^2 = 0 the transition is at sigma_w^2 = 1 (chi_1 = sigma_w^2 tanh'(0)^2 as q* -> 0)."""
    from vgbench import theory as t
    assert t.critical_weight_var("tanh", 0.05) == pytest.approx(1.76, abs=0.01)
    assert t.critical_weight_var("tanh", 0.0, 0.5, 3.0) == pytest.approx(1.0, abs=0.01)


def test_relu_fixed_point_and_chi_by_hand():
    """ReLU: E[relu(z)^2] = q/2 and E[relu'(z)^2] = 1/2, so q* = sb2 / (1 - sw2/2) and chi_1 = sw2/2."""
    from vgbench import theory as t
    assert t.q_star("relu", 1.0, 0.5) == pytest.approx(1.0, rel=1e-6)
    assert t.chi_1("relu", 1.0, 0.5) == pytest.approx(0.5, rel=1e-4)
    assert t.chi_1("relu", 2.0, 0.0) == pytest.approx(1.0, rel=1e-4)


def test_depth_scales_ordered_phase_and_peak_at_criticality():
    from vgbench import theory as t
    ordered = t.depth_scales("tanh", 1.0, 0.05)
    assert ordered["c_star"] == pytest.approx(1.0, abs=1e-6)
    # in the ordered phase c* = 1 and chi_c = chi_1: both depth scales are -1/ln chi_1
    assert ordered["xi_c"] == pytest.approx(-1 / math.log(ordered["chi_1"]), rel=1e-6)
    assert ordered["xi_grad"] == pytest.approx(ordered["xi_c"], rel=1e-6)
    xi = {sw2: t.depth_scales("tanh", sw2, 0.05)["xi_c"] for sw2 in (1.3, 1.76, 2.5)}
    assert xi[1.76] > 20 * max(xi[1.3], xi[2.5])
    chaotic = t.depth_scales("tanh", 3.0, 0.05)
    assert chaotic["chi_1"] > 1 and chaotic["c_star"] < 0.5
    # the correlation map itself: in the ordered phase it raises every c < 1 (so c* = 1 attracts);
    # in the chaotic phase c* is its fixed point and attracts (slope chi_c < 1 there)
    for c in (0.0, 0.3, 0.9, 0.999):
        assert t._corr_map("tanh", 1.0, 0.05, ordered["q_star"], c)[0] > c
    c_next, chi_c = t._corr_map("tanh", 3.0, 0.05, chaotic["q_star"], chaotic["c_star"])
    assert c_next == pytest.approx(chaotic["c_star"], abs=1e-9) and chi_c < 1


def test_per_example_prediction_matches_a_wide_net_with_mixed_input_norms():
    """Inputs of two very different norms (x0.2 and x2): the batch's measured error profile through a
    wide GELU + He net (autograd, every example's top-layer error the same unit vector) is predicted
    within 0.05 decades by averaging the mean-field profile over the examples' own input norms, and
    better than by one mean input norm (which is off by about 0.09)."""
    import math
    import numpy as np
    import torch
    from vgbench import theory
    g = torch.Generator().manual_seed(0)
    W, D, n_in, B = 1000, 20, 40, 200
    scale = torch.cat([torch.full((B // 2,), 0.2), torch.full((B // 2,), 2.0)])
    x = (torch.randn(B, n_in, generator=g) * scale[:, None]).requires_grad_()
    h, hs = x, []
    for l in range(D):
        fan = n_in if l == 0 else W
        h = torch.nn.functional.gelu(h @ (torch.randn(W, fan, generator=g) * math.sqrt(2 / fan)).T)
        h.retain_grad()
        hs.append(h)
    u = torch.randn(W, generator=g)
    (hs[-1] @ (u / u.norm())).sum().backward()
    meas = np.array([math.log10(float(h.grad.norm())) for h in hs])
    meas -= meas[-1]
    qs = x.detach().pow(2).mean(1).numpy()
    single = theory.predict("gelu", "he", D, W, n_in, float(qs.mean()))["log10_signal"]
    per_example = theory.predict_examples("gelu", "he", D, W, n_in, qs)
    assert np.abs(per_example - meas).max() < 0.05
    assert np.abs(per_example - meas).max() < 0.5 * np.abs(single - meas).max()
    # one input norm for every example: the average is that norm's own profile
    np.testing.assert_allclose(theory.predict_examples("gelu", "he", D, W, n_in, np.full(10, 0.7)),
                               theory.predict("gelu", "he", D, W, n_in, 0.7)["log10_signal"], atol=1e-12)


def test_phase_boundary_agreement_by_hand():
    """A 3 x 4 grid whose trained cells are set by hand: one cell (sigma_w^2 = 1, depth 20) does not train
    although 6 xi_c = 21.8 predicts it does, so 11 of 12 cells agree; the deepest trained depths
    5 / 400 / 20 rank like 6 xi_c (21.8 / ~3e4 / 41.9): Spearman rho = 1."""
    import pandas as pd
    from vgbench import theory as t
    trained = {(1.0, 5), (1.76, 5), (1.76, 20), (1.76, 100), (1.76, 400), (4.0, 5), (4.0, 20)}
    rows = [{"study": "s", "activation": "tanh", "bias_var": 0.05, "weight_var": sw, "depth": d, "seed": k,
             "baseline_metric": "acc", "baseline_value": 0.1, "score": 0.1 + (0.3 if (sw, d) in trained else 0.01)}
            for sw in (1.0, 1.76, 4.0) for d in (5, 20, 100, 400) for k in (0, 1)]
    rows.append({**rows[0], "study": "other", "score": 0.0})     # another study's runs are ignored
    per, s = t.phase_boundary(pd.DataFrame(rows), "s")
    assert per.set_index("weight_var")["measured_depth"].to_dict() == {1.0: 5, 1.76: 400, 4.0: 20}
    assert per.set_index("weight_var")["predicted_depth"][1.0] == pytest.approx(6 * 3.627, abs=0.01)
    assert s["cells"] == 12 and s["cell_agreement"] == pytest.approx(11 / 12)
    assert s["spearman_rho"] == pytest.approx(1.0)


def test_measured_profile_is_the_mean_log10_over_runs_and_skips_layers_where_one_underflowed():
    """The theory table's measured side, by hand: two runs of one condition, norms 10^-a and 10^-b
    at each layer -> -(a+b)/2; at layer 0 one run's norm underflowed to 0, so that layer is NaN
    (the mean of the other run alone was once taken: -3, biased up) and the slope comes from
    layers 1..3 only."""
    import pandas as pd
    runs = pd.DataFrame({"run_id": ["r0", "r1"], "study": "s", "stage": "final", "activation": "sigmoid",
                         "init": "default", "depth": 4, "width": 8, "sigmoid_grad_c": 0.0})
    logs = {"r0": [-3.0, -2.0, -1.0, -0.5], "r1": [None, -3.0, -2.0, -0.5]}   # None: underflowed to 0
    curves = pd.DataFrame([{"run_id": r, "study": "s", "kind": "signal", "step": 0, "index": l, "name": f"layer{l}",
                            "value": 0.0 if v is None else 10.0 ** v} for r, vs in logs.items() for l, v in enumerate(vs)])
    t = theory.table(runs, curves, "s").set_index("layer")
    assert math.isnan(t.loc[0, "measured_log10"])
    assert t.loc[[1, 2, 3], "measured_log10"].tolist() == pytest.approx([-2.5, -1.5, -0.5])
    # least-squares slope through (1, -2.5), (2, -1.5), (3, -0.5): exactly 1 per layer
    assert t["slope_measured"].iloc[0] == pytest.approx(1.0)
