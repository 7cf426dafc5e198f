"""Models: every model x activation x norm trains, and the autograd pieces are exact."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from conftest import cached_task
from vgbench.config import ACTIVATIONS, load
from vgbench.models import SigmoidGradC, build_model, task_loss
from vgbench.train import make_optimizer

SMALL_SEQ = {"seq_len": 12, "n_train": 128, "n_val": 16, "n_test": 16}
FF = [("mlp", "mnist1d", {}), ("mlp", "digits", {}), ("cnn", "mnist1d", {}),
      ("resnet", "digits", {}), ("rnn", "adding", SMALL_SEQ)]
CASES = [(m, t, a, act, n) for (m, t, a), act, n in itertools.product(FF, ACTIVATIONS, ("none", "batch", "layer"))
         if not (m == "rnn" and n == "batch")]
CASES += [(m, t, SMALL_SEQ, "tanh", n) for m, t in (("lstm", "copy"), ("gru", "temporal_order"), ("lstm", "adding"))
          for n in ("none", "layer")]
CASES += [("rnn", "mnist1d_seq", {}, "relu", "none"), ("gru", "digits_seq", {}, "tanh", "none")]

def train_steps(cfg, steps=3):
    task = cached_task(cfg)
    net = build_model(cfg, task)
    opt = make_optimizer(cfg, net.parameters())
    losses = []
    for i in range(steps):
        x, y = task.x["train"][i * 32:(i + 1) * 32], task.y["train"][i * 32:(i + 1) * 32]
        loss = task_loss(net(x), y, task.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net, losses


@pytest.mark.parametrize("model,task,args,act,norm", CASES)
def test_every_combination_trains_three_steps(model, task, args, act, norm):
    cfg = load({"model": model, "task": task, "task_args": args, "activation": act, "norm": norm,
                "depth": 3, "width": 8, "lr": 0.01})
    _, losses = train_steps(cfg)
    assert all(torch.isfinite(torch.tensor(losses)))


def test_signal_at_output_is_softmax_minus_onehot_over_batch():
    cfg = load({"depth": 4, "width": 16})
    task = cached_task(cfg)
    net = build_model(cfg, task)
    x, y = task.x["train"][:25], task.y["train"][:25]
    out = net(x, capture=True)
    F.cross_entropy(out, y).backward()
    by_hand = (torch.softmax(out.detach(), -1) - F.one_hot(y, 10)) / len(y)
    logits_grad = net.captured["h"][-1].grad
    assert torch.allclose(logits_grad, by_hand, atol=1e-7)
    assert logits_grad.norm().item() == pytest.approx(by_hand.norm().item(), rel=1e-6)


@pytest.mark.parametrize("c", [0.0, 0.05, 0.1])
def test_sigmoid_grad_c_backward_and_forward(c):
    x = torch.linspace(-8, 8, 101, dtype=torch.float64, requires_grad=True)
    y = SigmoidGradC.apply(x, c)
    assert torch.equal(y.detach(), torch.sigmoid(x.detach()))         # forward bit-identical
    y.sum().backward()
    s = torch.sigmoid(x.detach())
    assert torch.allclose(x.grad, s * (1 - s) + c)
    # and against a numerical derivative of sigmoid, plus c
    h = 1e-6
    num = (torch.sigmoid(x.detach() + h) - torch.sigmoid(x.detach() - h)) / (2 * h)
    assert torch.allclose(x.grad, num + c, atol=1e-8)


def test_residual_blocks_have_projection_only_where_shapes_change():
    net = build_model(load({"model": "resnet", "depth": 5, "width": 8}), cached_task(load({})))
    kinds = {k: type(m).__name__ for k, m in net.skips.items()}
    assert kinds == {"1": "Conv1d", "3": "Identity", "4": "Identity"}


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_fused_cells_equal_the_written_out_equations(model):
    cfg = load({"model": model, "task": "adding", "task_args": SMALL_SEQ, "depth": 2, "width": 8})
    task = cached_task(cfg)
    net = build_model(cfg, task)
    x = task.x["train"][:16]
    assert net.fused
    fused = net(x)
    net.fused = False
    assert torch.allclose(fused, net(x), atol=1e-6)


@pytest.mark.parametrize("model, extra", [("rnn", {}), ("rnn", {"activation": "relu", "init": "identity"}),
                                          ("lstm", {}), ("gru", {}), ("rnn", {"init": "orthogonal"})])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("task", ["adding", "copy"])
def test_fused_sequence_kernel_equals_the_unrolled_cells(model, extra, depth, task):
    """Training steps that record nothing use torch's fused kernel; recording steps unroll. Same
    parameters, so the loss and every parameter gradient must agree."""
    from vgbench.config import load
    from vgbench.data import load_task
    from vgbench.models import build_model, task_loss
    cfg = load({"task": task, "model": model, "depth": depth, "width": 12, "batch_size": 16, **extra,
                "task_args": {"seq_len": 9, "n_train": 32, "n_val": 8, "n_test": 8}})
    t = load_task(cfg)
    net = build_model(cfg, t)
    assert net.seq_kernel is not None
    x, y = t.x["train"][:16], t.y["train"][:16]
    res = []
    for capture in (True, False):
        net.zero_grad()
        loss = task_loss(net(x, capture=capture), y, t.loss)
        loss.backward()
        res.append((loss.item(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    (l1, g1), (l2, g2) = res
    assert l1 == pytest.approx(l2, rel=1e-5, abs=1e-6)
    assert g1.keys() == g2.keys()
    for n in g1:
        torch.testing.assert_close(g1[n], g2[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("extra", [{"norm": "layer"}, {"activation": "sigmoid", "sigmoid_grad_c": 0.1}])
def test_cells_without_a_fused_kernel_keep_the_loop(extra):
    from vgbench.config import load
    from vgbench.data import load_task
    from vgbench.models import build_model
    cfg = load({"task": "adding", "model": "rnn", "depth": 1, "width": 4, "batch_size": 8, **extra,
                "task_args": {"seq_len": 5, "n_train": 8, "n_val": 8, "n_test": 8}})
    assert build_model(cfg, load_task(cfg)).seq_kernel is None


def _transformer(**kw):
    from vgbench.config import load
    from vgbench.data import load_task
    from vgbench.models import build_model
    cfg = load({"model": "transformer", "task": "adding", "depth": 3, "width": 16, "heads": 2, "batch_size": 10,
                "task_args": {"seq_len": 12, "n_train": 20, "n_val": 10, "n_test": 10}, **kw})
    t = load_task(cfg)
    return cfg, t, build_model(cfg, t)


def test_transformer_pre_and_post_layer_norm_placement():
    """post-LN (Vaswani): every block's output is layer-normed, so each position has mean 0 and std 1
    at init; pre-LN (Xiong et al.): the residual stream is not normalised, a final LN precedes the head."""
    import torch
    _, t, post = _transformer(norm_position="post")
    _, _, pre = _transformer(norm_position="pre")
    x = t.x["train"][:10]
    for net, normalised in ((post, True), (pre, False)):
        net(x, capture=True)
        for h in net.captured["h_seq"]:
            mean, std = h.mean(-1), h.std(-1, unbiased=False)
            is_ln = bool(torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)
                         and torch.allclose(std, torch.ones_like(std), atol=1e-3))
            assert is_ln == normalised
    assert isinstance(pre.ln_out, torch.nn.LayerNorm) and isinstance(post.ln_out, torch.nn.Identity)


def test_transformer_rezero_starts_as_identity_and_alpha_learns():
    import torch
    from vgbench.models import task_loss
    cfg, t, net = _transformer(residual_branch="rezero")
    assert cfg.norm == "none" and len(net.alphas) == 3
    x, y = t.x["train"][:10], t.y["train"][:10]
    out0 = net(x).detach()
    with torch.no_grad():
        net.ff1[1].weight.mul_(3.0)
        net.attn[2].in_proj_weight.mul_(3.0)
    assert torch.equal(net(x).detach(), out0)
    task_loss(net(x), y, t.loss).backward()
    assert all(float(a.grad.abs()) > 0 for a in net.alphas)


def test_transformer_per_position_gradients_match_autograd():
    """hidden_t of a transformer = ||dL/dh_{l,t}|| over batch and width, read from autograd by hand."""
    import torch
    from vgbench.instruments import Recorder
    from vgbench.models import task_loss
    cfg, t, net = _transformer()
    rec = Recorder(net, [0], cfg.activation, cfg.recurrent)
    x, y = t.x["train"][:10], t.y["train"][:10]
    out = net(x, capture=True)
    task_loss(out, y, t.loss).backward()
    want = torch.stack([h.grad.pow(2).sum((0, 2)).sqrt() for h in net.captured["h_seq"]])
    rec.record(0, net)
    f = rec.frame()
    got = f[f.kind == "hidden_t"].pivot(index="name", columns="index", values="value").sort_index()
    assert torch.allclose(torch.tensor(got.to_numpy(), dtype=torch.float32), want, rtol=1e-5)
    assert len(f[f.kind == "weight_grad"]) == 4 * 3 + 1 and len(f[f.kind == "dead"]) == 3


def test_warmup_scales_the_first_updates(tmp_path):
    """One SGD step with warmup_steps 4 at lr 0.4 is the step at lr 0.1 (= 0.4 x 1/4) without warm-up."""
    from vgbench.config import load
    from vgbench.train import run
    base = {"depth": 2, "width": 8, "steps": 1, "optimizer": "sgd", "activation": "relu"}
    a = run(load({**base, "lr": 0.4, "warmup_steps": 4}), tmp_path / "a")
    b = run(load({**base, "lr": 0.1}), tmp_path / "b")
    c = run(load({**base, "lr": 0.4}), tmp_path / "c")
    assert a["final"]["test/loss"] == b["final"]["test/loss"] != c["final"]["test/loss"]


def test_transformer_config_errors():
    import pytest
    from vgbench.config import ConfigError, load
    seq = {"task": "adding", "model": "transformer"}
    for bad, msg in (({**seq, "width": 30, "heads": 4}, "multiple of heads"), ({**seq, "norm": "batch"}, "batch"),
                     ({**seq, "residual_branch": "fixup"}, "fixup"), ({"model": "transformer"}, "sequence task"),
                     ({"norm_position": "post"}, "transformer"), ({**seq, "norm_position": "mid"}, "norm_position")):
        with pytest.raises(ConfigError, match=msg):
            load(bad)
