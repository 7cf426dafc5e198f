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
