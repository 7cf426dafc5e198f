"""Mechanism tests: each mitigation knob acts where it claims (issue 4). Each test fails
if its knob is a no-op or wired to the wrong place."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import cached_task
from vgbench.config import load
from vgbench.models import build_model, task_loss
from vgbench.train import make_optimizer, pretrain_greedy, run

def net_of(**kw):
    cfg = load(kw)
    return cfg, build_model(cfg, cached_task(cfg))

# the tests read parameters (which require grad) as Python floats: PyTorch's warning about it is noise here
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")


def signal_at_init(net, cfg, n=200):
    t = cached_task(cfg)
    out = net(t.x["train"][:n], capture=True)
    loss = task_loss(out, t.y["train"][:n], t.loss)
    if net.aux_out:
        loss = loss + cfg.aux_loss_weight * sum(task_loss(a, t.y["train"][:n], t.loss) for a in net.aux_out)
    loss.backward()
    return [h.grad.norm().item() for h in net.captured["h"]]


@pytest.mark.parametrize("scheme,std", [
    ("normal", lambda i, o: 1.0), ("lecun", lambda i, o: math.sqrt(1 / i)),
    ("xavier", lambda i, o: math.sqrt(2 / (i + o))), ("he", lambda i, o: math.sqrt(2 / i)),
    ("default", lambda i, o: 1 / math.sqrt(3 * i))])          # U[+-1/sqrt(fan_in)]
def test_init_std_matches_formula(scheme, std):
    _, net = net_of(depth=3, width=256, init=scheme)
    for name, w in net.weights():
        fan_out, fan_in = w.shape
        assert w.std().item() == pytest.approx(std(fan_in, fan_out), rel=0.06), name


def test_init_std_conv_uses_kernel_fan_in():
    _, net = net_of(model="cnn", depth=3, width=64, init="he")
    w = net.ops[1].weight                          # (64, 64, 3): fan_in = 192
    assert w.std().item() == pytest.approx(math.sqrt(2 / 192), rel=0.06)


def test_orthogonal_init():
    _, net = net_of(depth=3, width=64, init="orthogonal")
    for name, w in net.weights():
        m = w if w.shape[0] >= w.shape[1] else w.T    # orthonormal columns of the tall side
        assert torch.allclose(m.T @ m, torch.eye(m.shape[1]), atol=1e-5), name


def test_prelu_slopes_learn_and_leaky_slope_is_configured():
    cfg, net = net_of(depth=3, width=16, activation="prelu", optimizer="adam", lr=0.01)
    before = [a.weight.detach().clone() for a in net.acts]
    assert all(torch.all(b == 0.25) for b in before)
    t = cached_task(cfg)
    opt = make_optimizer(cfg, net.parameters())
    for _ in range(5):
        loss = task_loss(net(t.x["train"][:100]), t.y["train"][:100], t.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(not torch.equal(b, a.weight) for b, a in zip(before, net.acts))
    _, leaky = net_of(depth=2, width=8, activation="leaky_relu", leaky_relu_slope=0.2)
    assert all(a.negative_slope == 0.2 for a in leaky.acts)
    assert leaky.acts[0](torch.tensor([-1.0])).item() == pytest.approx(-0.2)


def test_batch_norm_batch_stats_in_training_running_stats_in_eval():
    cfg, net = net_of(depth=2, width=16, norm="batch")
    x = cached_task(cfg).x["train"][:64]
    net.train()
    z = net.norms[0](net.ops[0](x.flatten(1)))
    assert z.mean(0).abs().max() < 1e-5 and (z.var(0, unbiased=False) - 1).abs().max() < 1e-3
    # training: one example's output depends on its batch; eval: it does not
    assert not torch.allclose(net(x)[:1], net(x[:2])[:1])
    net.eval()
    assert torch.allclose(net(x)[:1], net(x[:2])[:1], atol=1e-6)
    assert net.norms[0].running_mean.abs().sum() > 0   # updated by the training passes


def test_clip_norm_bounds_what_the_optimizer_sees(tmp_path, monkeypatch):
    seen = []
    orig = torch.optim.SGD.step

    def spy(self, *a, **k):
        g = [p.grad for grp in self.param_groups for p in grp["params"] if p.grad is not None]
        seen.append(torch.nn.utils.get_total_norm(g).item())
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    base = {"depth": 4, "width": 32, "activation": "relu", "init": "normal", "lr": 1e-4, "steps": 30,
            "record_points": 3}
    run(load({**base, "clip_norm": 0.5}), tmp_path / "clip")
    clipped, seen[:] = list(seen), []
    run(load(base), tmp_path / "free")
    assert len(clipped) == 30 and max(clipped) <= 0.5 * (1 + 1e-5)
    assert max(seen) > 0.5                                  # the threshold was binding


@pytest.mark.parametrize("opt", ["sgd", "momentum"])
def test_weight_decay_shrinks_weights_by_expected_factor(opt):
    cfg, net = net_of(depth=2, width=8, lr=0.1, weight_decay=0.01, optimizer=opt)
    o = make_optimizer(cfg, net.parameters())
    w0 = net.ops[0].weight.detach().clone()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)                         # zero data gradient
    o.step()
    assert torch.allclose(net.ops[0].weight, w0 * (1 - 0.1 * 0.01), atol=1e-7)


def test_sigmoid_grad_c_same_forward_bigger_backward():
    cfg0, n0 = net_of(depth=6, width=32)
    cfg1, n1 = net_of(depth=6, width=32, sigmoid_grad_c=0.1)
    x = cached_task(cfg0).x["train"][:50]
    assert torch.equal(n0(x), n1(x))                        # same weights, same output
    s0, s1 = signal_at_init(n0, cfg0), signal_at_init(n1, cfg1)
    assert s1[0] / s1[-2] > 2 * s0[0] / s0[-2]              # less decay towards the input


def test_residual_skip_matters_and_keeps_signal_flowing():
    cfg, net = net_of(depth=20, width=64, residual=True, activation="relu", init="he")
    x = cached_task(cfg).x["train"][:50]
    y = net(x)
    plain_same_weights = copy.deepcopy(net)
    plain_same_weights.skips.clear()
    assert not torch.allclose(y, plain_same_weights(x))
    for act in ("sigmoid", "tanh"):
        cfg_p, plain = net_of(depth=20, width=64, activation=act)
        cfg_r, res = net_of(depth=20, width=64, activation=act, residual=True)
        sp, sr = signal_at_init(plain, cfg_p), signal_at_init(res, cfg_r)
        # |log10(h_1 / h_L)|: orders of magnitude lost from the top hidden layer to the first
        lp, lr = abs(math.log10(sp[0] / sp[-2])), abs(math.log10(sr[0] / sr[-2]))
        assert lr < 0.25 * lp and lr < 1.0, act


def test_greedy_pretraining_reconstruction_falls_and_freezes_earlier_layers():
    cfg, net = net_of(depth=3, width=32, pretrain="greedy_ae", pretrain_steps=150, optimizer="adam", lr=0.01)
    snaps = []
    info = pretrain_greedy(cfg, net, cached_task(cfg),
                           on_layer_done=lambda l, n: snaps.append([o.weight.detach().clone() for o in n.ops]))
    assert info["steps"] == 450 and len(info["layers"]) == 3
    for layer in info["layers"]:
        assert layer["loss_last"] < 0.7 * layer["loss_first"], layer
    for l in range(3):
        for k in range(l):              # layers below l did not move during l's phase
            assert torch.equal(snaps[l][k], snaps[l - 1][k])
        for k in range(l + 1, 3):       # layers above l were not touched yet
            assert torch.equal(snaps[l][k], snaps[0][k])
        if l:
            assert not torch.equal(snaps[l][l], snaps[l - 1][l])


def test_pretrain_steps_reported_separately(tmp_path):
    s = run(load({"depth": 2, "width": 16, "pretrain": "greedy_ae", "pretrain_steps": 20, "steps": 10,
                  "record_points": 2}), tmp_path / "r")
    assert s["pretrain_steps"] == 40 and s["steps"] == 10


def test_aux_heads_strengthen_early_signal():
    cfg0, n0 = net_of(depth=12, width=32)
    cfg1, n1 = net_of(depth=12, width=32, aux_loss_weight=0.3, aux_every=3)
    assert n1.aux_layers == [2, 5, 8]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(n0.weights(), n1.weights()))
    s0, s1 = signal_at_init(n0, cfg0), signal_at_init(n1, cfg1)
    assert s1[0] > 10 * s0[0] and s1[-1] == pytest.approx(s0[-1])


def test_aux_heads_off_in_eval_and_reported_accuracy_is_main_head():
    cfg, net = net_of(depth=6, width=16, aux_loss_weight=0.3)
    x = cached_task(cfg).x["train"][:10]
    net.eval()
    net(x)
    assert net.aux_out == []


def test_irnn_identity_recurrent_matrix():
    cfg, net = net_of(model="rnn", task="adding", activation="relu", init="identity", width=16, depth=2, batch_size=10,
                      task_args={"n_train": 10, "n_val": 10, "n_test": 10})
    for l in range(2):
        assert torch.equal(net.w_hh[l].weight, torch.eye(16))
        assert net.w_ih[l].weight.std().item() < 0.01
    assert isinstance(net.act, torch.nn.ReLU)


def test_rezero_alpha_starts_at_zero_and_receives_gradient():
    """ReZero: each residual block starts as the identity (alpha = 0), and alpha learns."""
    from vgbench.config import load
    from vgbench.data import load_task
    from vgbench.models import build_model, task_loss
    cfg = load({"depth": 6, "width": 16, "residual": True, "residual_branch": "rezero", "activation": "relu",
                "init": "he"})
    t = load_task(cfg)
    net = build_model(cfg, t)
    assert len(net.alphas) == len(net.skips) > 0 and all(float(a.detach()) == 0 for a in net.alphas.values())
    x, y = t.x["train"][:32], t.y["train"][:32]
    # at init every block is its skip only: changing a branch's weights does not change the output
    out0 = net(x).detach()
    with torch.no_grad():
        net.ops[3].weight.mul_(5.0)
    assert torch.equal(net(x).detach(), out0)
    task_loss(net(x), y, t.loss).backward()
    assert all(a.grad is not None and float(a.grad.abs()) > 0 for a in net.alphas.values())
    with pytest.raises(Exception, match="needs residual: true"):
        load({"residual_branch": "rezero"})


def test_forget_bias_and_chrono_init():
    from vgbench.config import load
    from vgbench.data import load_task
    from vgbench.models import build_model
    base = {"task": "adding", "model": "lstm", "depth": 1, "width": 256, "batch_size": 10,
            "task_args": {"seq_len": 50, "n_train": 10, "n_val": 10, "n_test": 10}}
    t = load_task(load(base))
    b0 = build_model(load(base), t).w_ih[0].bias.detach()
    b1 = build_model(load({**base, "forget_bias": 1.0}), t).w_ih[0].bias.detach()
    W = 256
    assert torch.allclose(b1[W:2 * W], b0[W:2 * W] + 1.0) and torch.equal(b1[:W], b0[:W])
    bc = build_model(load({**base, "forget_bias": "chrono"}), t).w_ih[0].bias.detach()
    bf, bi = bc[W:2 * W], bc[:W]
    # log U[1, T-1], T = 50: in [0, log 49], and exp(b_f) uniform with mean (1 + 49) / 2
    assert float(bf.min()) >= 0 and float(bf.max()) <= math.log(49) + 1e-6
    assert float(bf.exp().mean()) == pytest.approx(25.0, rel=0.1)
    assert torch.equal(bi, -bf)
    with pytest.raises(Exception, match="forget_bias"):
        load({**base, "model": "gru", "forget_bias": 1.0})


def test_fixup_scaling_zero_last_layers_and_scalars():
    """Fixup (Zhang et al. 2019): with L branches of m = 2 layers, each branch's first layer is the
    init scaled by L^(-1/2), its last layer and the head start at 0, scalar biases at 0, multipliers
    at 1; every block is then its skip (the output is the head's zero), and the multipliers and
    the last layers receive gradient."""
    from vgbench.config import load
    from vgbench.data import load_task
    from vgbench.models import build_model, task_loss
    base = {"depth": 8, "width": 64, "residual": True, "activation": "relu", "init": "he"}
    t = load_task(load(base))
    plain = build_model(load(base), t)
    fix = build_model(load({**base, "residual_branch": "fixup"}), t)
    L = 4  # depth 8: blocks (0,1) (2,3) (4,5) (6,7)
    for first, last in [(0, 1), (2, 3), (4, 5), (6, 7)]:
        # the same seed draws the same He weights, so the ratio is the Fixup factor exactly
        assert torch.allclose(fix.ops[first].weight, plain.ops[first].weight * L ** -0.5)
        assert float(fix.ops[last].weight.detach().abs().max()) == 0
    assert float(fix.head.weight.detach().abs().max()) == 0
    assert len(fix.scales) == L and all(float(s.detach()) == 1 for s in fix.scales.values())
    assert len(fix.bias_op) == len(fix.bias_act) == 8
    x, y = t.x["train"][:32], t.y["train"][:32]
    # every block starts as act(skip): the hidden state after block 2 is ReLU of its input
    with torch.no_grad():
        h1 = fix(x, upto=2)
        assert torch.equal(fix(x, upto=4), torch.relu(h1))
    task_loss(fix(x), y, t.loss).backward()
    # the zero head passes no gradient down at step 0; after one step on it, the branches learn
    assert float(fix.head.weight.grad.abs().sum()) > 0 and float(fix.ops[7].weight.grad.abs().sum()) == 0
    with torch.no_grad():
        fix.head.weight.sub_(fix.head.weight.grad)
    fix.zero_grad()
    task_loss(fix(x), y, t.loss).backward()
    assert float(fix.ops[7].weight.grad.abs().sum()) > 0 and float(fix.bias_act[7].grad.abs()) > 0
    with pytest.raises(Exception, match="needs norm: none"):
        load({**base, "residual_branch": "fixup", "norm": "batch"})
    with pytest.raises(Exception, match="needs residual: true"):
        load({"residual_branch": "fixup"})


@pytest.mark.parametrize("model, activation", [("mlp", "relu"), ("mlp", "tanh"), ("resnet", "relu")])
def test_lsuv_unit_output_variance_on_held_out_batch(model, activation):
    """LSUV (Mishkin & Matas 2016): every weight layer's own output has variance 1 (within 10 %) on a
    batch it was not fitted on; deterministic for a seed; orthogonal before the rescaling."""
    from vgbench.config import load
    from vgbench.data import load_task
    from vgbench.models import build_model
    cfg = load({"model": model, "depth": 10 if model == "mlp" else 4, "width": 32, "activation": activation,
                "init": "lsuv", "batch_size": 100})
    t = load_task(cfg)
    net = build_model(cfg, t)
    fitted = net.lsuv_batch(t)
    held_out = t.x["test"][:500]
    assert not any(torch.equal(fitted[0], r) for r in held_out)
    outs = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, o))
             for n, m in net.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d))]
    with torch.no_grad():
        net(held_out)
    for h in hooks:
        h.remove()
    weighted = [n.rsplit(".", 1)[0] for n, _ in net.weights()]
    assert set(weighted) <= set(outs)
    for n in weighted:
        assert float(outs[n].var()) == pytest.approx(1.0, rel=0.10), n
    again = build_model(cfg, t)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(net.weights(), again.weights()))
    # the rescaling is not a no-op: orthogonal alone gives other variances
    ortho = build_model(load({**cfg.to_dict(), "init": "orthogonal"}), t)
    with torch.no_grad():
        ortho(held_out)
    assert any(abs(float(w1.norm() / w2.norm()) - 1) > 0.05
               for (_, w1), (_, w2) in zip(net.weights(), ortho.weights()))
    with pytest.raises(Exception, match="lsuv"):
        load({"model": "lstm", "task": "adding", "init": "lsuv"})
