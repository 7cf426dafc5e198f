"""`vgbench diagnose` on models with a known answer, its numbers against autograd, bad input -> exit 2."""
import json

import pytest
import torch
from torch import nn

from vgbench import cli
from vgbench.diagnose import diagnose, measure


def mlp(depth, act, init=None, width=64, d_in=40):
    torch.manual_seed(0)
    layers, d = [], d_in
    for _ in range(depth):
        lin = nn.Linear(d, width)
        if init == "he":
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
        elif init == "normal":
            nn.init.normal_(lin.weight, 0.0, 1.0)
        layers += [lin, act()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, 10))


X = torch.randn(64, 40, generator=torch.Generator().manual_seed(1))


def replication_evidence():
    """The replication profile's claims as shipped with vgbench, by id."""
    import pandas as pd
    from vgbench.diagnose import EVIDENCE
    return pd.read_csv(EVIDENCE / "replication_claims.csv").set_index("id")


def test_sigmoid_mlp_vanishes_with_a_matching_mean_field_prediction():
    rep = diagnose(mlp(20, nn.Sigmoid), X)
    assert rep.verdict == "vanishing" and rep.ratio < 1e-10
    assert rep.ranges and rep.ranges[0]["kind"] == "vanishing"
    assert any("ReLU" in a["mitigation"] for a in rep.advice) and rep.advice[0]["evidence"]
    assert rep.theory["activation"] == "sigmoid"
    sat = [a for a in rep.activations if "saturated" in a]
    assert len(sat) == 20


def test_relu_he_is_healthy_and_relu_normal_explodes():
    assert diagnose(mlp(20, nn.ReLU, "he"), X).verdict == "healthy"
    rep = diagnose(mlp(20, nn.ReLU, "normal"), X)
    assert rep.verdict == "exploding"
    assert any("clipping" in a["mitigation"] for a in rep.advice)


def test_a_forward_pass_that_overflows_is_exploding_not_healthy():
    """A 60-layer ReLU net with N(0, 1) weights overflows float32 in the forward pass: the loss and
    every gradient are NaN, and the ratio of NaNs once read as 'healthy'."""
    rep = diagnose(mlp(60, nn.ReLU, "normal"), X)
    assert rep.verdict == "exploding" and "not finite" in rep.note and rep.ratio is None
    assert rep.to_dict()["note"] == rep.note
    assert any("clipping" in a["mitigation"] for a in rep.advice)


@pytest.mark.parametrize("call, words", [
    (lambda: diagnose("net", X), "model must be a torch.nn.Module"),
    (lambda: diagnose(mlp(2, nn.ReLU), X.tolist()), "example_input must be a torch.Tensor"),
    (lambda: diagnose(mlp(2, nn.ReLU), torch.full_like(X, float("nan"))), "NaN or infinite"),
    (lambda: diagnose(mlp(2, nn.ReLU), X, loss="l1"), "loss must be 'xent', 'mse' or None"),
    (lambda: diagnose(mlp(2, nn.ReLU), X, steps=-1), "steps must be an integer >= 0"),
    (lambda: diagnose(mlp(2, nn.ReLU), X, steps=2, lr=0), "lr must be a positive finite number"),
    (lambda: diagnose(mlp(2, nn.ReLU).requires_grad_(False), X), "no trainable parameters"),
])
def test_python_api_names_a_bad_argument(call, words):
    """Before: AttributeError / an autograd RuntimeError, or silently ignored (loss, steps < 0)."""
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        call()


class Residual(nn.Module):
    def __init__(self, depth=20, width=64):
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(40, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth))
        for b in self.blocks:
            nn.init.normal_(b[0].weight, 0.0, 0.1 / width ** 0.5)
        self.out = nn.Linear(width, 10)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


def test_residual_net_is_healthy():
    assert diagnose(Residual(), X).verdict == "healthy"


class Recurrent(nn.Module):
    """A recurrent layer (tanh RNN by default, or nn.LSTM) read out at the last step."""
    def __init__(self, cell=nn.RNN):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = cell(2, 32, batch_first=True)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def test_tanh_rnn_vanishes_through_time():
    x = torch.randn(16, 100, 2, generator=torch.Generator().manual_seed(0))
    rep = diagnose(Recurrent(), x)
    assert len(rep.time) == 100 and rep.time_verdict == "vanishing" and rep.time[0] < rep.time[-1]
    assert any("LSTM" in a["mitigation"] for a in rep.advice)


def test_transformer_encoder_is_measured_attention_included():
    """Attention applies its out_proj weight itself, so a hook on leaf modules never saw it: the
    attention layers were missing from the table. Each block is now attention, norm1, linear1,
    linear2, norm2, with ||dL/dW|| equal to autograd's over the module's own weights."""
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 3, enable_nested_tensor=False)
    x = torch.randn(4, 10, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)          # the same dropout masks in both passes
    rep = measure(enc, x)
    assert [l["name"] for l in rep.layers[:5]] == ["layers.0.self_attn", "layers.0.norm1", "layers.0.linear1",
                                                   "layers.0.linear2", "layers.0.norm2"] and len(rep.layers) == 15
    torch.manual_seed(1)
    out = enc(x)   # the same loss by hand: every position's 16 outputs read as class logits
    y = torch.randint(0, 16, (40,), generator=torch.Generator().manual_seed(0))
    nn.functional.cross_entropy(out.reshape(40, 16), y).backward()
    for l in rep.layers:
        m = enc.get_submodule(l["name"])
        ws = [m.in_proj_weight, m.out_proj.weight] if l["type"] == "MultiheadAttention" else [m.weight]
        assert l["weight_grad"] == pytest.approx(float(torch.cat([w.grad.flatten() for w in ws]).norm()), rel=1e-4, abs=0)
    # healthy at init (post-LN keeps every block's gradient alike): no layer range is flagged, where
    # single consecutive-layer factors (norm1 -> linear1 -> linear2: a branch against the main path)
    # were reported as six alternating vanishing / exploding ranges
    assert rep.verdict == "healthy" and rep.ranges == []


@pytest.mark.parametrize("vals, ranges", [
    ([1.0, 0.4, 1.0, 0.4, 1.0], []),                                    # alternating: one factor at a time
    ([0.001, 0.01, 0.1, 1.0, 1.0], [("vanishing", [0, 3], 0.1)]),        # three factors of 0.1
    ([1.0, 1.0, 300.0, 3.0, 1.0], [("exploding", [2, 4], 300 ** 0.5)]),  # 1 -> 300 alone is not a range
    ([0.01, 0.1, 1.0], [("vanishing", [0, 2], 0.1)]),
    ([0.1, 1.0], []),
])
def test_local_ranges_need_three_layers_in_a_row(vals, ranges):
    from vgbench.diagnose import _local_ranges
    got = [(r["kind"], r["layers"], r["mean_factor_per_layer"]) for r in _local_ranges(vals)]
    assert [(k, l) for k, l, _ in got] == [(k, l) for k, l, _ in ranges]
    for (_, _, f), (_, _, want) in zip(got, ranges):
        assert f == pytest.approx(want)


def test_resnet18_runs_in_seconds():
    tv = pytest.importorskip("torchvision")
    rep = diagnose(tv.models.resnet18(weights=None), torch.randn(8, 3, 64, 64))
    assert rep.verdict in ("vanishing", "exploding", "healthy")


class Basic(nn.Module):
    """torchvision's BasicBlock (He et al. 2016), for a ResNet-18 without torchvision."""

    def __init__(self, c_in, c, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.down = None if stride == 1 and c_in == c else nn.Sequential(
            nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        skip = x if self.down is None else self.down(x)
        return self.relu(self.b2(self.c2(self.relu(self.b1(self.c1(x))))) + skip)


def resnet18():
    torch.manual_seed(0)
    blocks, c_in = [], 64
    for c, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        blocks += [Basic(c_in, c, stride), Basic(c, c, 1)]
        c_in = c
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1), *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(512, 1000))


def test_a_resnet18_is_diagnosed_layer_by_layer():
    """ResNet-18's architecture (11.7 M parameters, 20 convolutions, 20 batch norms, the fc head)
    at batch 8: every layer with weights gets its gradient norms, in forward order, and with batch
    norm and skips the net is not vanishing. (`vgbench diagnose` of it takes ~1 s, README.)"""
    net = resnet18()
    assert sum(p.numel() for p in net.parameters()) == 11_689_512  # torchvision's resnet18
    rep = diagnose(net, torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    types = [l["type"] for l in rep.layers]
    assert types.count("Conv2d") == 20 and types.count("BatchNorm2d") == 20 and types[-1] == "Linear"
    assert types[0] == "Conv2d" and all(l["weight_grad"] > 0 for l in rep.layers)
    assert rep.verdict != "vanishing"


def test_norms_equal_autograd_and_the_model_is_left_unchanged():
    net = mlp(3, nn.Tanh, width=8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rep = measure(net, X, target=torch.zeros(64, dtype=torch.long), loss="xent")
    # the reference: autograd on the same loss, with the hidden outputs kept
    hs, h = [], X
    for m in net:
        h = m(h)
        if isinstance(m, nn.Linear):
            h.retain_grad()
            hs.append(h)
    nn.functional.cross_entropy(h, torch.zeros(64, dtype=torch.long)).backward()
    lin = [m for m in net if isinstance(m, nn.Linear)]
    assert [l["out_grad"] for l in rep.layers] == pytest.approx([float(t.grad.norm()) for t in hs], rel=1e-5, abs=0)
    assert [l["weight_grad"] for l in rep.layers] == pytest.approx([float(m.weight.grad.norm()) for m in lin], rel=1e-5, abs=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net[0]._forward_hooks  # hooks removed


def test_steps_measure_again_after_training():
    rep = diagnose(mlp(3, nn.ReLU, "he", width=16), X, steps=5, lr=0.1)
    assert rep.after is not None and rep.after.layers[0]["weight_grad"] != rep.layers[0]["weight_grad"]


class TokenRNN(nn.Module):
    """A language-model-like net: token indices -> embedding -> tanh RNN -> read out at the last step."""
    def __init__(self, vocab=50):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.rnn, self.head = nn.Embedding(vocab, 8), nn.RNN(8, 32, batch_first=True), nn.Linear(32, 5)

    def forward(self, x):
        return self.head(self.rnn(self.emb(x))[0][:, -1])


def test_token_inputs_stay_integers_and_time_is_measured_at_the_embedding():
    """Integer inputs were cast to float, so no model starting with nn.Embedding could be diagnosed,
    not even with the indices the user passed; per-time-step gradients are read at the embedding's
    output, against autograd."""
    net, x = TokenRNN(), torch.randint(0, 50, (16, 60), generator=torch.Generator().manual_seed(0))
    rep = diagnose(net, x)
    assert [l["name"] for l in rep.layers] == ["emb", "rnn", "head"] and len(rep.time) == 60
    e = net.emb(x)
    e.retain_grad()
    y = torch.randint(0, 5, (16,), generator=torch.Generator().manual_seed(0))
    nn.functional.cross_entropy(net.head(net.rnn(e)[0][:, -1]), y).backward()
    want = e.grad.norm(dim=(0, 2))
    assert rep.time == pytest.approx(want.tolist(), rel=1e-4)
    assert rep.time_verdict == "vanishing" and rep.layers[0]["weight_grad"] == pytest.approx(float(net.emb.weight.grad.norm()), rel=1e-4, abs=0)


class DictOut(nn.Module):
    """Hugging Face style: a mapping with the logits and other tensors (the hidden state first)."""
    def __init__(self):
        super().__init__()
        self.net = mlp(3, nn.Sigmoid)

    def forward(self, x):
        return {"hidden": x * 2, "logits": self.net(x)}


def test_a_model_returning_a_mapping_is_measured_on_its_logits():
    """A model returning a dict failed with 'the output is not a tensor'."""
    rep, ref = diagnose(DictOut(), X), diagnose(mlp(3, nn.Sigmoid), X)
    assert [l["weight_grad"] for l in rep.layers] == pytest.approx([l["weight_grad"] for l in ref.layers], rel=1e-6, abs=0)
    with pytest.raises(ValueError, match="mapping holding one"):
        diagnose(type("NoTensor", (nn.Linear,), {"forward": lambda self, x: {"n": 3}})(40, 2), X)


def test_a_float64_model_is_measured_in_float64():
    """Inputs were cast to float32, so a model in float64 failed on its own dtype."""
    rep = diagnose(mlp(3, nn.Tanh).double(), X.double())
    assert rep.verdict == "healthy" and len(rep.layers) == 4


def test_cli_targets_import_their_neighbours_like_python_does(tmp_path, capsys, monkeypatch):
    """A model file importing a module next to it failed ('No module named helpers'), and so did
    'module:factory' for a module in the working directory: the vgbench script, unlike python -m,
    does not put the working directory on the path."""
    import sys
    monkeypatch.setattr(sys, "path", list(sys.path))
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "vg_helpers_t.py").write_text("import torch.nn as nn\ndef block(i, o):\n    return nn.Sequential(nn.Linear(i, o), nn.Tanh())\n")
    (pkg / "vg_model_t.py").write_text("import torch.nn as nn\nfrom vg_helpers_t import block\n"
                                     "def net():\n    return nn.Sequential(block(10, 16), nn.Linear(16, 3))\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["diagnose", "pkg/vg_model_t.py:net", "--input-shape", "10", "--out", "o1"]) == 0
    monkeypatch.chdir(pkg)
    monkeypatch.delitem(sys.modules, "vg_helpers_t")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in (str(pkg), "", ".")])   # as in the script
    assert cli.main(["diagnose", "vg_model_t:net", "--input-shape", "10", "--out", "o2"]) == 0
    assert json.loads((pkg / "o2/diagnose.json").read_text())["layers"][0]["type"] == "Linear"
    capsys.readouterr()


def test_cli_draws_token_indices_for_a_model_with_an_embedding(tmp_path, capsys):
    f = tmp_path / "m.py"
    f.write_text("import torch.nn as nn\ndef net():\n    return nn.Sequential(nn.Embedding(30, 8), nn.Flatten(), "
                 "nn.Linear(80, 3))\n")
    assert cli.main(["diagnose", f"{f}:net", "--input-shape", "10", "--out", str(tmp_path / "o")]) == 0
    assert "random token indices in [0, 30)" in capsys.readouterr().out
    d = json.loads((tmp_path / "o/diagnose.json").read_text())
    assert [l["type"] for l in d["layers"]] == ["Embedding", "Linear"] and all(l["weight_grad"] for l in d["layers"])


@pytest.mark.parametrize("dtype", ["bfloat16", "float64"])
def test_cli_feeds_a_model_inputs_in_its_own_dtype(tmp_path, capsys, dtype):
    """A bfloat16 model once failed ('mat1 and mat2 must have the same dtype'): the random batch was
    float32. The first layer's weight gradient is checked against autograd on the same batch."""
    f = tmp_path / "m.py"
    f.write_text(f"import torch, torch.nn as nn\ndef net():\n    torch.manual_seed(0)\n    return nn.Sequential("
                 f"nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3)).to(torch.{dtype})\n")
    assert cli.main(["diagnose", f"{f}:net", "--input-shape", "10", "--out", str(tmp_path / "o")]) == 0
    assert f"input: torch.{dtype}" in capsys.readouterr().out
    d = json.loads((tmp_path / "o/diagnose.json").read_text())
    import importlib.util
    spec = importlib.util.spec_from_file_location("m_ref", f)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    net = m.net()
    x = torch.randn((64, 10), generator=torch.Generator().manual_seed(0)).to(getattr(torch, dtype))
    target = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(0))   # diagnose's own labels
    nn.functional.cross_entropy(net(x), target).backward()
    assert len(d["layers"]) == 2
    assert d["layers"][0]["weight_grad"] == pytest.approx(float(net[0].weight.grad.norm()), rel=1e-6, abs=0)


def test_cli_writes_json_png_pdf(tmp_path, capsys):
    f = tmp_path / "m.py"
    f.write_text("import torch.nn as nn\ndef net():\n    return nn.Sequential(*[m for _ in range(12) for m in "
                 "(nn.Linear(40 if _ == 0 else 32, 32), nn.Sigmoid())], nn.Linear(32, 10))\n")
    assert cli.main(["diagnose", f"{f}:net", "--input-shape", "40", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "verdict: vanishing" in out
    d = json.loads((tmp_path / "o/diagnose.json").read_text())
    assert d["verdict"] == "vanishing" and (tmp_path / "o/diagnose.png").stat().st_size > 1000
    assert (tmp_path / "o/diagnose.pdf").exists()


@pytest.mark.parametrize("args, words", [
    (["nomodule:net", "--input-shape", "40"], "cannot import"),
    (["{f}:nothere", "--input-shape", "40"], "has no attribute"),
    (["{f}", "--input-shape", "40"], "module:factory"),
    (["{f}:net", "--input-shape", "4,x"], "--input-shape"),
    (["{f}:net", "--input-shape", "7"], "failed on input of shape"),
    (["{f}:net"], "--input-shape"),
    (["{f}:net", "--input-shape", "40", "--batch", "0"], "--batch: must be an integer >= 1"),
    (["{f}:net", "--input-shape", "40", "--steps", "-3"], "--steps: must be an integer >= 0"),
    (["{f}:net", "--input-shape", "40", "--lr", "nan"], "--lr: must be a positive finite number"),
    (["{f}:net", "--input-shape", "4", "--task", "mnist1d"], "one mnist1d example has 40"),
    (["{f}:net", "--input-shape", "100000,100000"], "cannot make a random batch"),
    (["{f}:net", "--input-shape", "40", "--results", "{tmp}/noresults"], "no {tmp}/noresults/stats/claims.csv"),
    (["{f}:wrong", "--input-shape", "40"], "failed on input of shape (64, 40): ValueError: not this input"),
])
def test_cli_bad_target_or_shape_exit_2(tmp_path, capsys, args, words):
    f = tmp_path / "m.py"
    f.write_text("import torch.nn as nn\ndef net():\n    return nn.Sequential(nn.Linear(40, 8), nn.ReLU(), nn.Linear(8, 2))\n"
                 "class Wrong(nn.Linear):\n    def forward(self, x):\n        raise ValueError('not this input')\n"
                 "def wrong():\n    return Wrong(40, 2)\n")
    try:
        code = cli.main(["diagnose", *[a.replace("{f}", str(f)).replace("{tmp}", str(tmp_path)) for a in args],
                         "--out", str(tmp_path / "o")])
    except SystemExit as e:   # argparse's own errors (bad option values) exit 2 this way
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and words.replace("{tmp}", str(tmp_path)) in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()   # nothing written when the input is bad


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_cli_out_at_or_under_a_file_exits_2_before_any_work(tmp_path, capsys, where):
    f = tmp_path / "thesis.tex"
    f.write_text("hi")
    out = f if where == "file" else f / "o"
    code = cli.main(["diagnose", "nomodule:net", "--input-shape", "40", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and ("is a file" in err or "is an existing file" in err) and "cannot import" not in err
    assert f.read_text() == "hi"


def test_lstm_vanishing_through_time_gets_the_forget_bias_advice_with_shipped_evidence():
    """PyTorch's LSTM (forget bias 0) at T = 100: the error reaching the first steps is tiny; the advice
    cites the frontier profile's forget-gate claims (adding) and the replication's chrono claim
    (temporal order), read from the CSVs shipped with the package."""
    import pandas as pd
    from vgbench.diagnose import EVIDENCE
    x = torch.randn(16, 100, 2, generator=torch.Generator().manual_seed(0))
    rep = diagnose(Recurrent(nn.LSTM), x)
    assert rep.time_verdict == "vanishing"
    fb = [a for a in rep.advice if "forget-gate" in a["mitigation"]]
    assert len(fb) == 1
    assert all(f in fb[0]["evidence_source"] for f in ("frontier_claims.csv", "replication_claims.csv"))
    frontier = pd.read_csv(EVIDENCE / "frontier_claims.csv").set_index("id")
    replication = replication_evidence()
    assert [e["effect"] for e in fb[0]["evidence"]] == [frontier.loc["chrono_helps", "effect"],
                                                       frontier.loc["forget_bias1_helps", "effect"],
                                                       replication.loc["chrono_temporal_order_20_seeds", "effect"]]
    assert not any("LSTM or GRU" in a["mitigation"] or "IRNN" in a["mitigation"] for a in rep.advice)   # it is one


def test_a_vanilla_rnn_vanishing_through_time_gets_gated_units_and_irnn_with_the_replicated_evidence():
    torch.manual_seed(0)
    x = torch.randn(16, 100, 2, generator=torch.Generator().manual_seed(0))
    rep = diagnose(Recurrent(nn.RNN), x)
    assert rep.time_verdict == "vanishing"
    kinds = [a["mitigation"] for a in rep.advice]
    assert any("LSTM or GRU" in k for k in kinds)
    irnn = [a for a in rep.advice if "IRNN" in a["mitigation"]]
    assert len(irnn) == 1 and "replication_claims.csv" in irnn[0]["evidence_source"]
    shipped = replication_evidence()
    assert [e["effect"] for e in irnn[0]["evidence"]] == [shipped.loc["irnn_adding_clipped_100_seeds", "effect"],
                                                         shipped.loc["irnn_adding_clipped_T100_100_seeds", "effect"]]
    # the gated-unit advice states the eleventh round too: PyTorch's LSTM against the RNN on temporal order
    gated = next(a for a in rep.advice if "LSTM or GRU" in a["mitigation"])
    row = shipped.loc["lstm_matches_rnn_temporal_order_80_seeds"]
    assert {"claim": row["claim"], "verdict": row["verdict"], "effect": row["effect"]}.items() <= next(
        e for e in gated["evidence"] if e["claim"] == row["claim"]).items()


def test_every_advised_claim_is_in_the_shipped_evidence_with_its_numbers():
    """A renamed or dropped claim would silently leave a mitigation without its measured effect."""
    import pandas as pd
    from vgbench.diagnose import ADVICE, SHIPPED
    shipped = pd.concat([pd.read_csv(f) for f in SHIPPED], ignore_index=True).set_index("id")
    for key, (_, ids, _) in ADVICE.items():
        missing = [i for i in ids if i not in shipped.index]
        assert not missing, f"advice {key}: {missing} not in {[f.name for f in SHIPPED]}"
    rep = diagnose(mlp(20, nn.Sigmoid), X)   # vanishing, no normalisation: LSUV is advised, with both claims
    lsuv = [a for a in rep.advice if "LSUV" in a["mitigation"]]
    assert len(lsuv) == 1
    assert [e["effect"] for e in lsuv[0]["evidence"]] == [shipped.loc["lsuv_tuned_beats_xavier", "effect"],
                                                         shipped.loc["lsuv_tuned_beats_he", "effect"],
                                                         shipped.loc["lsuv_tuned_beats_xavier_30_seeds", "effect"],
                                                         shipped.loc["lsuv_tuned_beats_he_200_seeds", "effect"]]


def test_advice_cites_the_commits_and_kernels_each_shipped_claim_records_for_its_runs():
    """The provenance of shipped evidence comes from the claims CSVs' commits/kernels columns (written
    by the stats stage), not from a note kept by hand: every shipped row has them, each evidence item
    carries its row's, and the source names every commit and kernel set of the claims it cites."""
    import re
    import pandas as pd
    from vgbench.diagnose import SHIPPED
    shipped = pd.concat([pd.read_csv(f).assign(_file=f.name) for f in SHIPPED], ignore_index=True)
    for col in ("commits", "kernels"):
        assert shipped[col].map(lambda v: isinstance(v, str) and re.fullmatch(r"[^;]+ \(\d+\)(; [^;]+ \(\d+\))*", v)
                                is not None).all(), col
    shipped = shipped.drop_duplicates("id").set_index("id")
    rep = diagnose(mlp(20, nn.Sigmoid), X)
    lsuv = [a for a in rep.advice if "LSUV" in a["mitigation"]][0]
    by_claim = shipped.set_index("claim")
    for e in lsuv["evidence"]:
        assert (e["commits"], e["kernels"]) == tuple(by_claim.loc[e["claim"], ["commits", "kernels"]])
        for part in e["commits"].split("; ") + e["kernels"].split("; "):
            name = part.rsplit(" (", 1)[0]
            assert (name if name != "unknown" else "CPU kernels not recorded") in lsuv["evidence_source"]
    assert {"frontier_claims.csv", "replication_claims.csv"} <= set(re.findall(r"\w+_claims\.csv", lsuv["evidence_source"]))


def test_a_vanishing_tanh_stack_gets_orthogonal_weights_with_the_isometry_evidence_and_sigmoid_does_not():
    """The replication's eighth round measured orthogonal vs Gaussian weights in tanh nets only."""
    rep = diagnose(mlp(20, nn.Tanh), X)   # PyTorch's default init: ordered phase, gradients vanish
    assert rep.verdict == "vanishing"
    orth = [a for a in rep.advice if "orthogonal weights" in a["mitigation"]]
    assert len(orth) == 1 and "replication_claims.csv" in orth[0]["evidence_source"]
    shipped = replication_evidence()
    assert [e["effect"] for e in orth[0]["evidence"]] == [
        shipped.loc[f"orthogonal_learns_faster_d{d}_60_seeds", "effect"] for d in (32, 64, 128)]
    sig = diagnose(mlp(20, nn.Sigmoid), X)
    assert sig.verdict == "vanishing" and not any("orthogonal weights" in a["mitigation"] for a in sig.advice)


def test_post_ln_blocks_with_a_gradient_problem_get_pre_ln_with_the_warm_up_evidence_and_pre_ln_blocks_do_not():
    from vgbench.diagnose import Report, advice

    def encoder(norm_first):
        return nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, norm_first=norm_first),
                                     2, enable_nested_tensor=False)
    rep = Report(layers=[], verdict="vanishing", ratio=1e-4, ranges=[])
    pre = [a for a in advice(encoder(False), rep) if "pre-LN" in a["mitigation"]]
    assert len(pre) == 1
    shipped = replication_evidence()
    ev = {e["claim"]: e["effect"] for e in pre[0]["evidence"]}
    row = shipped.loc["pre_ln_beats_warmup_80_seeds"]
    assert ev[row["claim"]] == row["effect"] and "replication_claims.csv" in pre[0]["evidence_source"]
    assert not any("pre-LN" in a["mitigation"] for a in advice(encoder(True), rep))


def test_a_model_with_one_measured_layer_says_why_there_is_no_ratio():
    """A single Linear layer, or a stack whose other layers are frozen, has no first/last ratio; the
    report said 'healthy (first/last = --)' without a word on why."""
    torch.manual_seed(0)
    rep = diagnose(nn.Linear(40, 3), X)
    assert rep.ratio is None and rep.note.startswith("1 layer(s) with trainable weights measured:")
    net = mlp(2, nn.Tanh)
    for p in net[0].parameters():
        p.requires_grad_(False)
    rep = diagnose(net, X)
    assert [r["name"] for r in rep.layers] == ["2", "4"] and rep.ratio is not None and rep.note is None
    for p in net[2].parameters():
        p.requires_grad_(False)
    rep = diagnose(net, X)
    assert rep.ratio is None and "(2 with frozen weights are not)" in rep.note


def test_where_float32_loses_a_layers_gradient_a_float64_copy_measures_it():
    """A 50-layer sigmoid MLP: float32's first-layer gradients are 0 (or lost in the subnormal
    range); diagnose measures again through a float64 copy. Reference: the same model cast to
    float64 by hand, the first and last Linear outputs' gradients by autograd."""
    torch.manual_seed(0)
    model = mlp(50, nn.Sigmoid, width=128)
    rep = diagnose(model, X)
    assert rep.ratio < 1e-38 and rep.float64 is not None and 0 in rep.float64["layers"]
    ref = __import__("copy").deepcopy(model).double()
    outs = []

    def keep(mod, inp, out):   # returns None: the output stays as it is
        out.retain_grad()
        outs.append(out)
    for m in ref:
        if isinstance(m, nn.Linear):
            m.register_forward_hook(keep)
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(0))   # diagnose's default target
    nn.functional.cross_entropy(ref(X.double()), y).backward()
    true = (outs[0].grad.norm() / outs[-1].grad.norm()).item()
    assert 0 < true < 1e-30
    assert rep.float64["ratio"] == pytest.approx(true, rel=1e-9, abs=0)
    assert rep.ratio != pytest.approx(true, rel=0.01, abs=0)   # float32 lost digits: 1.1e-43 against 2.4e-43
    assert next(model.parameters()).dtype == torch.float32 and all(p.grad is None for p in model.parameters())
    # a healthy model has nothing to measure again
    assert diagnose(mlp(4, nn.ReLU, init="he"), X).float64 is None


def test_a_true_zero_gradient_is_not_called_underflow(capsys, tmp_path):
    """A layer after which every weight is 0 passes no gradient back in any precision: the float64
    copy reads 0 too, and the report says it is a true zero."""
    from vgbench.diagnose import _table
    model = mlp(4, nn.Tanh)
    with torch.no_grad():
        model[4].weight.zero_()
    rep = diagnose(model, X)
    assert rep.float64 is not None and rep.float64["ratio"] == 0.0
    assert "a true zero, not underflow" in _table(rep, False)


def test_the_diagnosis_of_a_factory_is_repeatable_and_seeded(tmp_path):
    """The factory builds its model after torch is seeded (--seed, default 0): the same command
    gives the same numbers, another seed other ones."""
    f = tmp_path / "m.py"
    f.write_text("from torch import nn\ndef make():\n    return nn.Sequential(nn.Linear(40, 16), nn.Tanh(), "
                 "nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 10))\n")
    runs = []
    for i, seed in enumerate(([], [], ["--seed", "1"])):
        assert cli.main(["diagnose", f"{f}:make", "--input-shape", "40", "--out", str(tmp_path / str(i)), *seed]) == 0
        runs.append(json.loads((tmp_path / str(i) / "diagnose.json").read_text())["layers"])
    assert runs[0] == runs[1] and runs[0] != runs[2]
