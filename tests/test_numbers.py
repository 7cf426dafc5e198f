"""The numbers vgbench reports, each against an independent reference (issue 20): recorded
gradient norms vs the model's own .grad, bootstrap CIs vs scipy, summary.json written last
(a crash before it leaves an incomplete run), and every config field in the run id."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as st

from vgbench import grid, paths, stats
from vgbench.config import FIELDS, load
from vgbench.data import load_task
from vgbench.instruments import Recorder
from vgbench.models import build_model, task_loss


def _backward(cfg_dict, n=20):
    cfg = load(cfg_dict)
    torch.manual_seed(0)
    task = load_task(cfg)
    net = build_model(cfg, task)
    x, y = task.x["train"][:n], task.y["train"][:n]
    out = net(x, capture=True)
    task_loss(out, y, task.loss).backward()
    return cfg, net


def test_recorded_weight_and_signal_norms_equal_the_models_gradients():
    cfg, net = _backward({"depth": 3, "width": 8, "activation": "sigmoid"})
    # the reference, taken before the recorder reads anything: plain L2 norms of .grad, input side first
    w_ref = [torch.linalg.vector_norm(net.ops[l].weight.grad).item() for l in range(3)] + \
            [torch.linalg.vector_norm(net.head.weight.grad).item()]
    h_ref = [torch.linalg.vector_norm(h.grad).item() for h in net.captured["h"]]
    rec = Recorder(net, [0], cfg.activation, cfg.recurrent)
    rec.record(0, net)
    f = rec.frame()
    w = f[f.kind == "weight_grad"].sort_values("index")
    assert list(w["name"]) == ["ops.0.weight", "ops.1.weight", "ops.2.weight", "head.weight"]
    assert w["value"].tolist() == pytest.approx(w_ref, rel=1e-5)
    assert rec.ratio(0) == pytest.approx(w_ref[0] / w_ref[-1], rel=1e-5, abs=0)
    s = f[f.kind == "signal"].sort_values("index")
    assert s["value"].tolist() == pytest.approx(h_ref, rel=1e-5)
    assert len(h_ref) == 4 and h_ref[0] < h_ref[2]  # sigmoid: the error shrinks towards the input


def test_recorded_hidden_t_norms_equal_the_models_gradients():
    cfg, net = _backward({"task": "adding", "model": "rnn", "depth": 1, "width": 6, "batch_size": 20,
                          "task_args": {"seq_len": 7, "n_train": 40, "n_val": 10, "n_test": 10}})
    ref = [torch.linalg.vector_norm(h.grad).item() for h in net.captured["h_t"][0]]
    rec = Recorder(net, [0], cfg.activation, cfg.recurrent)
    rec.record(0, net)
    f = rec.frame()
    ht = f[f.kind == "hidden_t"].sort_values("index")
    assert ht["index"].tolist() == list(range(7))
    assert ht["value"].tolist() == pytest.approx(ref, rel=1e-5)


def test_tiny_norms_are_not_read_as_zero():
    """torch's float32 norm sums float32 squares: a gradient whose elements are below ~3e-23 read 0
    (a 40-layer sigmoid net's early layers: elements ~1e-30, far above float32's smallest value
    1.4e-45), and vgbench counted such runs as 'underflowed float32'. Reference: the float64 norm
    of the same float32 gradients."""
    from vgbench.instruments import norm, norms
    v = torch.full((32, 32), 1e-30)
    assert float(torch.linalg.vector_norm(v)) == 0.0                       # the trap
    assert norm(v) == pytest.approx(32e-30, rel=1e-6, abs=0) and float(norms([v])[0]) == pytest.approx(32e-30, rel=1e-6, abs=0)
    big = torch.randn(64, 64)
    assert norms([big])[0].item() == torch._foreach_norm([big])[0].item()  # float32's own, bit for bit

    cfg, net = _backward({"depth": 40, "width": 8, "activation": "sigmoid"})
    w_ref = [net.ops[l].weight.grad.double().norm().item() for l in range(40)] + [net.head.weight.grad.double().norm().item()]
    h_ref = [h.grad.double().norm().item() for h in net.captured["h"]]
    assert min(w_ref) < 1e-25 and min(w_ref) > 1e-40   # the range the float32 norm reads as 0
    rec = Recorder(net, [0], cfg.activation, cfg.recurrent)
    rec.record(0, net)
    f = rec.frame()
    assert f[f.kind == "weight_grad"].sort_values("index")["value"].tolist() == pytest.approx(w_ref, rel=1e-5, abs=0)
    assert f[f.kind == "signal"].sort_values("index")["value"].tolist() == pytest.approx(h_ref, rel=1e-5, abs=0)
    assert rec.ratio(0) == pytest.approx(w_ref[0] / w_ref[-1], rel=1e-5, abs=0)


def test_an_underflowed_ratio_is_censored_not_bounded():
    """Where the first-layer gradient underflows float32 (ratio 0) the ratio is counted at float32's
    smallest value, 1.4e-45. That was called an upper bound on the true ratio; it is not: the
    backward signal loses its digits in the subnormal range before it reaches 0, and the same net
    in float64 has a ratio above it (the default profile's 50-layer sigmoid nets: ~1e-42.6).
    Reference: the float64 forward and backward of the same weights and batch."""
    from vgbench import stats
    cfg, net = _backward({"depth": 50, "width": 256, "activation": "sigmoid"}, n=100)
    rec = Recorder(net, [0], cfg.activation, cfg.recurrent)
    rec.record(0, net)
    assert rec.ratio(0) == 0.0                                # float32: every first-layer element is 0
    torch.manual_seed(0)
    task = load_task(cfg)
    net64 = build_model(cfg, task).double()
    net64.load_state_dict(net.state_dict())
    task_loss(net64(task.x["train"][:100].double()), task.y["train"][:100], task.loss).backward()
    true = (net64.ops[0].weight.grad.norm() / net64.head.weight.grad.norm()).item()
    assert true > 10 * stats.FLOAT32_TINY                     # above the value the ratio is counted at
    assert true < 1e-35                                       # and still a vanishing gradient


def test_a_run_records_the_underflowed_ratio_at_init_through_float64(tmp_path):
    """Where float32's first-layer gradient at init is tiny, a run also records the ratio through a
    float64 copy of the net (summary `grad_ratio_init_f64`, outcome `log10_ratio_init_f64`): the
    50-layer sigmoid net reads 0 in float32. Reference: the float64 forward and backward of the
    same initial weights, rebuilt from the seed, on the run's first batch (vgbench.data.Batches)."""
    import pytorch_lightning as pl
    from vgbench import train
    from vgbench.data import Batches
    cfg = load({"depth": 50, "width": 256, "activation": "sigmoid", "steps": 0, "seed": 3,
                "task_args": {"num_samples": 1000}})
    s = train.run(cfg, tmp_path / "run")
    assert s["grad_ratio_init"] == 0.0
    pl.seed_everything(cfg.seed, verbose=False)
    task = load_task(cfg)
    net64 = build_model(cfg, task).double()
    x, y = next(iter(Batches(task.x["train"], task.y["train"], cfg.batch_size, cfg.seed)))
    task_loss(net64(x.double()), y, task.loss).backward()
    true = (net64.ops[0].weight.grad.norm() / net64.head.weight.grad.norm()).item()
    assert 10 * stats.FLOAT32_TINY < true < 1e-35
    assert s["grad_ratio_init_f64"] == pytest.approx(true, rel=1e-9, abs=0)
    runs = pd.DataFrame([{"stage": "final", "status": "ok", "baseline_metric": "acc", "baseline_value": 0.1,
                          "final.test/acc": 0.1, "labels": "{}", "grad_ratio_final": np.nan,
                          **{k: s[k] for k in ("grad_ratio_init",
                                                                                     "grad_ratio_init_f64")}}])
    o = stats.outcomes(runs).iloc[0]
    assert o["log10_ratio_init"] == pytest.approx(np.log10(stats.FLOAT32_TINY))   # float32's, censored
    assert o["log10_ratio_init_f64"] == pytest.approx(np.log10(true), abs=1e-9)
    # a run trained before the float64 copy existed: float32's value, or none where it is censored
    old = runs.drop(columns="grad_ratio_init_f64").assign(grad_ratio_init=[0.0])
    assert np.isnan(stats.outcomes(old).iloc[0]["log10_ratio_init_f64"])
    assert stats.outcomes(old.assign(grad_ratio_init=[1e-3])).iloc[0]["log10_ratio_init_f64"] == pytest.approx(-3)


def test_the_float64_ratio_equals_float32s_where_nothing_underflows():
    """ratio_float64 computes the same function as training does, for every model kind: where
    float32 has its digits, the two ratios agree to float32's precision."""
    from vgbench.data import Batches
    from vgbench.instruments import ratio_float64
    from vgbench.train import VGModule
    seq = {"task": "adding", "task_args": {"seq_len": 8, "n_train": 200, "n_val": 50, "n_test": 50}}
    for kw in [{"activation": "tanh", "norm": "batch", "aux_loss_weight": 0.3}, {"sigmoid_grad_c": 0.1},
               {"model": "cnn", "depth": 3}, {"model": "resnet", "depth": 2, "residual_branch": "rezero"},
               {"model": "lstm", **seq}, {"model": "gru", "depth": 2, **seq}, {"model": "rnn", **seq},
               {"model": "transformer", "depth": 2, "heads": 2, "width": 16, **seq}]:
        cfg = load({"depth": 4, "steps": 1, "task_args": {"num_samples": 1000}, **kw})
        torch.manual_seed(0)
        task = load_task(cfg)
        net = build_model(cfg, task)
        if cfg.residual_branch == "rezero":   # alpha = 0 at init: give the branches a gradient path
            with torch.no_grad():
                for n_, p in net.named_parameters():
                    if "alpha" in n_:
                        p.fill_(0.5)
        m = VGModule(cfg, task, net, Recorder(net, [0, 1], cfg.activation, cfg.recurrent))
        x, y = next(iter(Batches(task.x["train"], task.y["train"], cfg.batch_size, cfg.seed)))
        m.backward_on((x, y), 0, True)
        before = [p.detach().clone() for p in net.parameters()]
        r64 = ratio_float64(net, lambda n_, to: m.loss_of(n_, to(x), to(y)))
        assert m.rec.ratio(0) > 0 and r64 == pytest.approx(m.rec.ratio(0), rel=1e-5, abs=0), kw
        assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))   # the model untouched
        assert next(net.parameters()).dtype == torch.float32


def test_tiny_recurrent_norms_are_not_read_as_zero():
    """The same for ||dL/dh_t|| of a vanilla RNN whose recurrent weights are
    scaled down until the gradient reaching the first steps is ~1e-30."""
    cfg = load({"task": "adding", "model": "rnn", "depth": 1, "width": 6, "batch_size": 20,
                "task_args": {"seq_len": 30, "n_train": 40, "n_val": 10, "n_test": 10}})
    torch.manual_seed(0)
    task = load_task(cfg)
    net = build_model(cfg, task)
    with torch.no_grad():
        net.w_hh[0].weight.mul_(0.1)
    task_loss(net(task.x["train"][:20], capture=True), task.y["train"][:20], task.loss).backward()
    ref = [h.grad.double().norm().item() for h in net.captured["h_t"][0]]
    assert min(ref) < 1e-25
    rec = Recorder(net, [0], cfg.activation, cfg.recurrent)
    rec.record(0, net)
    f = rec.frame()
    ht = f[f.kind == "hidden_t"].sort_values("index")
    assert [v for v, r in zip(ht["value"], ref) if r > 1e-38] == pytest.approx([r for r in ref if r > 1e-38], rel=1e-4, abs=0)


def test_dead_fraction_by_hand():
    """Layer 0's weights and biases set so that exactly 3 of 8 ReLU units are <= 0 for every input."""
    cfg = load({"depth": 2, "width": 8, "activation": "relu", "init": "he"})
    task = load_task(cfg)
    net = build_model(cfg, task)
    with torch.no_grad():
        net.ops[0].weight.zero_()
        net.ops[0].bias.copy_(torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]))
    x, y = task.x["train"][:20], task.y["train"][:20]
    task_loss(net(x, capture=True), y, task.loss).backward()
    rec = Recorder(net, [0], cfg.activation, cfg.recurrent)
    rec.record(0, net)
    f = rec.frame()
    dead = f[(f.kind == "dead") & (f["index"] == 0)]["value"].item()
    assert dead == pytest.approx(3 / 8)


@pytest.mark.parametrize("x", [[0.61, 0.72, 0.55, 0.68, 0.70, 0.40], [1.0, 2.0, 4.0, 8.0]])
def test_bootstrap_ci_equals_scipy_with_the_same_seed(x):
    ref = st.bootstrap((np.array(x),), np.mean, n_resamples=stats.N_BOOT, method="percentile",
                       rng=np.random.default_rng(0)).confidence_interval
    lo, hi = stats.bootstrap_ci(x)
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    assert hi - lo > 0.1 * np.std(x)  # an interval, not a point


def test_bootstrap_diff_ci_equals_scipy_with_the_same_seed():
    x, y = np.array([0.61, 0.72, 0.55, 0.68, 0.70]), np.array([0.40, 0.52, 0.41, 0.45])
    ref = st.bootstrap((x, y), lambda a, b, axis=-1: a.mean(axis) - b.mean(axis), n_resamples=stats.N_BOOT,
                       method="percentile", rng=np.random.default_rng(0), vectorized=True).confidence_interval
    assert stats.bootstrap_diff_ci(x, y) == pytest.approx((ref.low, ref.high))


def test_a_crash_before_the_summary_leaves_an_incomplete_run(tmp_path, tiny, monkeypatch):
    """summary.json is written after metrics.csv and gradients.parquet: if writing the data
    fails, the run is not complete, so a resume retrains it."""
    from vgbench.train import run

    def crash(self, *a, **k):
        raise OSError("disk full (injected)")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(OSError, match="injected"):
        run(load(tiny), tmp_path / "r")
    assert not paths.is_complete(tmp_path / "r")
    monkeypatch.undo()
    run(load(tiny), tmp_path / "r")  # the resume clears the partial run and completes it
    assert paths.is_complete(tmp_path / "r")


# every field of the run config, with a different valid value: the run id must change
ALTERNATIVES = {
    "task": ("digits", {}), "task_args": ({"num_samples": 4000}, {}), "model": ("cnn", {}), "depth": (4, {}),
    "width": (9, {}), "activation": ("tanh", {}), "leaky_relu_slope": (0.2, {"activation": "leaky_relu"}),
    "init": ("he", {}), "norm": ("layer", {}), "residual": (True, {}), "optimizer": ("adam", {}),
    "lr": (0.2, {}), "momentum": (0.5, {"optimizer": "momentum"}), "weight_decay": (0.01, {}),
    "clip_norm": (1.0, {}), "sigmoid_grad_c": (0.1, {}), "pretrain": ("greedy_ae", {}),
    "pretrain_steps": (7, {"pretrain": "greedy_ae"}), "aux_loss_weight": (0.3, {}),
    "aux_every": (2, {"aux_loss_weight": 0.3}), "steps": (21, {}), "batch_size": (51, {}), "seed": (1, {}),
    "data_seed": (1, {}), "eval_every": (3, {}), "record_points": (5, {}), "preset": ("modern", {}),
    "weight_var": (1.76, {"init": "gaussian"}), "bias_var": (0.05, {"init": "gaussian"}),
    "residual_branch": ("rezero", {"residual": True}),
    "forget_bias": (1.0, {"task": "adding", "model": "lstm", "task_args": {"seq_len": 10}}),
    "jacobian_inputs": (3, {}), "warmup_steps": (5, {}),
    "norm_position": ("post", {"task": "adding", "model": "transformer", "task_args": {"seq_len": 10}}),
    "heads": (2, {"task": "adding", "model": "transformer", "task_args": {"seq_len": 10}}),
}


def test_every_config_field_changes_the_run_id():
    assert set(ALTERNATIVES) == set(FIELDS), "a new config field needs an entry here"
    base = {"task": "mnist1d", "model": "mlp", "depth": 3, "width": 8, "steps": 20, "batch_size": 50, "seed": 0}
    study = grid.Study(name="s", job_by="variant", base=base, variants={"v": {}}, axes={}, seeds=[0], lr_grid=[],
                       tune_steps=None, tune_seeds=[100])

    def rid(m):
        return grid._make(study, "final", "v", (), m).run_id
    for key, (value, needs) in ALTERNATIVES.items():
        a, b = {**base, **needs}, {**base, **needs, key: value}
        assert rid(a) != rid(b), f"changing {key} keeps the run id"


def test_late_fields_at_their_default_keep_existing_run_ids():
    """Adding vocabulary must not rename (and so retrain) existing runs: a config that leaves
    the late fields at their defaults hashes as it did before they existed."""
    from vgbench.config import LATE_FIELDS, config_hash
    cfg = load({"depth": 3, "width": 8})
    old = {k: v for k, v in cfg.to_dict().items() if k not in LATE_FIELDS}
    assert config_hash(cfg.identity()) == config_hash(old)
    assert config_hash(load({"depth": 3, "width": 8, "init": "gaussian", "weight_var": 2.0}).identity()) != \
        config_hash(load({"depth": 3, "width": 8, "init": "gaussian"}).identity())


def test_gaussian_init_has_the_requested_variances():
    from vgbench.models import build_model
    cfg = load({"depth": 3, "width": 256, "activation": "tanh", "init": "gaussian", "weight_var": 1.76,
                "bias_var": 0.05})
    net = build_model(cfg, load_task(cfg))
    w, b = net.ops[1].weight, net.ops[1].bias
    w, b = w.detach(), b.detach()
    assert float(w.var()) * w.shape[1] == pytest.approx(1.76, rel=0.03)
    assert float(b.var()) == pytest.approx(0.05, rel=0.3)
    from vgbench.config import ConfigError
    with pytest.raises(ConfigError, match="init 'gaussian'"):
        load({"init": "he", "weight_var": 2.0})


def test_jacobian_singular_values_match_the_hand_product(tmp_path):
    """jacobian_sv in gradients.parquet = singular values of D_L W_L ... D_1 W_1 (D_l = diag tanh'(z_l)),
    built by hand from the model's weights for each recorded input; and the spread outcome is the std of
    their log10, computed here with numpy."""
    import numpy as np
    import pandas as pd
    import torch
    from vgbench.claims import jacobian_spread
    from vgbench.config import load
    from vgbench.data import load_task
    from vgbench.models import build_model
    from vgbench.train import run
    cfg = load({"depth": 3, "width": 16, "activation": "tanh", "init": "orthogonal", "steps": 0,
                "jacobian_inputs": 2})
    run(cfg, tmp_path / "r")
    g = pd.read_parquet(tmp_path / "r" / "gradients.parquet")
    sv = g[g.kind == "jacobian_sv"]
    assert set(sv.step) == {0} and set(sv.name) == {"example0", "example1"}
    net = build_model(cfg, load_task(cfg))   # the same seed: the same weights
    x = load_task(cfg).x["train"][:2]
    for i in range(2):
        h = x[i].flatten().double()
        J = torch.eye(h.numel(), dtype=torch.float64)
        for l in range(3):
            W, b = net.ops[l].weight.double().detach(), net.ops[l].bias.double().detach()
            z = W @ h + b
            J = torch.diag(1 - torch.tanh(z) ** 2) @ W @ J
            h = torch.tanh(z)
        want = np.linalg.svd(J.numpy(), compute_uv=False)
        got = sv[sv.name == f"example{i}"].sort_values("index")["value"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    curves = sv.assign(run_id="r")
    spread = np.mean([np.std(np.log10(sv[sv.name == n]["value"].to_numpy())) for n in ("example0", "example1")])
    assert float(jacobian_spread(curves)["r"]) == pytest.approx(spread)
