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
