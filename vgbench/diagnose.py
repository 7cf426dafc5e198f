"""`vgbench diagnose`: gradient flow of a user's own model, with a verdict and the benchmark's evidence.

`diagnose(model, example_input)` measures, with hooks and without changing the module:
  - per layer (every leaf module with a weight, every recurrent module and every attention module,
    in the order the forward pass calls them):
    ||dL/dW|| and ||dL/dh|| (the gradient reaching the layer's output);
  - the fraction of dead (ReLU family: <= 0 for every example) or saturated (sigmoid/tanh:
    derivative below 5 % of its maximum) units at the outputs of activation modules;
  - for models with a recurrent module (nn.RNN/LSTM/GRU): ||dL/dx_t||, the gradient that
    reaches each time step of the input through the recurrence (for integer token inputs, the
    gradient at the first embedding's output);
  - for a plain stack of Linear layers with one known activation, the mean-field prediction
    (vgbench.theory) of the per-layer decay beside the measured one.
Verdict (thresholds stated in THRESHOLDS): the first/last layer ratio of ||dL/dh|| over the
whole net decides vanishing (< 10^-2), exploding (> 10^2) or healthy; each run of at least three
consecutive layers whose local factors (consecutive-layer ratios) are all below 1/2 or all above 2
is reported as a vanishing or exploding range. A single factor is not: between two consecutive
layers of a residual block or a transformer's feed-forward branch it compares a branch with the
main path, not one depth with the next. Advice lists the mitigations that apply to the model, each with
the effect the benchmark measured (a results folder's claims.csv, or the numbers shipped in
vgbench/evidence/default_claims.csv, frontier_claims.csv, followup_claims.csv and
replication_claims.csv, stated as such).
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vgbench import paths
from vgbench.config import ConfigError
from vgbench.instruments import norm

THRESHOLDS = {"vanishing_below": 1e-2, "exploding_above": 1e2, "local_low": 0.5, "local_high": 2.0,
              "local_min_layers": 3, "saturated_derivative": 0.05}
EVIDENCE = Path(__file__).resolve().parent / "evidence"
# the claims shipped with vgbench (copies of profiles' results/stats/claims.csv); each row names
# the commits and CPU kernel sets its runs were trained at (columns commits, kernels)
SHIPPED = tuple(EVIDENCE / f"{p}_claims.csv" for p in ("default", "frontier", "followup", "replication"))
RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)
# modules measured as one layer although they have children: attention applies its out_proj's
# weight itself (F.multi_head_attention_forward), so no hook on out_proj ever fires
LAYERS = RECURRENT + (nn.MultiheadAttention,)
RELU_LIKE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.PReLU, nn.SELU, nn.ReLU6)
SATURATING = {nn.Sigmoid: ("sigmoid", lambda a: a * (1 - a) / 0.25), nn.Tanh: ("tanh", lambda a: 1 - a * a)}
# mitigation -> (when it applies, the benchmark claims that measured it)
ADVICE = {
    "activation": ("saturating activations vanish", ["relu_helps", "he_with_relu", "he_with_relu_80_seeds"],
                "ReLU with He initialisation instead of sigmoid/tanh"),
    "orthogonal": ("tanh gradients vanish", ["orthogonal_learns_faster_d32_60_seeds",
                                             "orthogonal_learns_faster_d64_60_seeds",
                                             "orthogonal_learns_faster_d128_60_seeds"],
                   "if it stays tanh: orthogonal weights at criticality (gain 1, zero biases: dynamical "
                   "isometry) instead of Gaussian ones"),
    "normalise": ("deep stack without normalisation",
                  ["batch_norm_helps", "batch_norm_deeper", "batch_norm_deeper_8_seeds"],
                  "batch normalisation between layers"),
    "lsuv": ("deep stack without normalisation", ["lsuv_tuned_beats_xavier", "lsuv_tuned_beats_he",
                                                  "lsuv_tuned_beats_xavier_30_seeds", "lsuv_tuned_beats_he_200_seeds"],
             "LSUV initialisation (orthogonal, then each layer scaled to unit output variance on a data batch)"),
    "skips": ("deep stack without skips", ["residual_helps", "resnet_helps", "resnet_helps_12_seeds"],
              "residual connections"),
    "deep_supervision": ("early layers get little gradient", ["aux_loss_gradients", "aux_loss_helps"],
                 "auxiliary losses on hidden layers (deep supervision)"),
    "gated": ("vanilla recurrent unit", ["lstm_adding", "gru_adding", "gru_temporal_order_20_seeds",
                                         "lstm_chrono_temporal_order_20_seeds",
                                         "lstm_matches_rnn_temporal_order_80_seeds"],
              "an LSTM or GRU instead of a vanilla RNN"),
    "identity_rnn": ("vanilla recurrent unit", ["irnn_adding_clipped_100_seeds", "irnn_adding_clipped_T100_100_seeds"],
             "if it stays a vanilla RNN: ReLU units with identity-initialised recurrent weights (IRNN), with "
             "gradient clipping"),
    "clipping": ("gradients explode", ["clip_high_lr", "clip_large_init", "clip_shallow"], "gradient-norm clipping"),
    "lower_lr": ("gradients explode", ["lower_lr_stops_blowup"], "a lower learning rate"),
    "init": ("gradients explode", ["he_with_relu", "he_with_relu_80_seeds"],
             "a variance-preserving initialisation (He for ReLU, LeCun/Xavier for tanh) instead of large weights"),
    "branch_scaling": ("gradients explode without normalisation", ["fixup_trains_deep", "rezero_trains_deep",
                                                                   "rezero_conv_high_lr", "fixup_conv_high_lr",
                                                                   "rezero_conv_beats_plain_best_30_seeds",
                                                                   "rezero_conv_beats_plain_best_105_seeds"],
                       "if the net is residual: scaled branches (Fixup, or ReZero: h = x + alpha F(x), alpha = 0 "
                       "at init) instead of normalisation"),
    "forget_bias": ("LSTM gradients vanish through time", ["chrono_helps", "forget_bias1_helps",
                                                           "chrono_temporal_order_20_seeds"],
                    "a positive forget-gate bias (1, or chrono init: b_f ~ log U[1, T - 1], b_i = -b_f)"),
    "norm_first": ("post-LN transformer blocks", ["post_ln_needs_warmup", "pre_ln_without_warmup", "rezero_transformer",
                                                  "pre_ln_beats_warmup_80_seeds"],
               "pre-LN blocks (norm_first=True) or ReZero, or else learning-rate warm-up (which left some "
               "post-LN nets untrained where pre-LN trained every one)"),
}


@dataclass
class Report:
    """The measurements of one model: `layers` (list of dicts, input side first), `time` (per
    time step, recurrent models), verdicts and advice. to_dict() is the JSON written by the CLI."""
    layers: list
    verdict: str
    ratio: float | None
    ranges: list
    time: list = field(default_factory=list)
    time_verdict: str | None = None
    theory: dict | None = None
    advice: list = field(default_factory=list)
    after: "Report | None" = None
    loss: float | None = None
    activations: list = field(default_factory=list)   # dead / saturated fraction per activation module
    note: str | None = None                             # why the verdict is what it is, where not the ratio
    float64: dict | None = None                         # where float32 lost a layer's gradient (see again_in_float64)

    def to_dict(self) -> dict:
        d = {"verdict": self.verdict, "first_last_ratio": self.ratio, "thresholds": THRESHOLDS,
             "ranges": self.ranges, "layers": self.layers, "time": self.time, "time_verdict": self.time_verdict,
             "theory": self.theory, "advice": self.advice, "loss": self.loss, "activations": self.activations,
             "note": self.note, "float64": self.float64}
        if self.after is not None:
            d["after_training"] = self.after.to_dict()
        return d

    def plot(self):
        """Figure: ||dL/dh|| and ||dL/dW|| per layer (and ||dL/dx_t|| per time step), paper style."""
        import matplotlib.pyplot as plt
        from vgbench.figures import style
        style.apply()
        n = 2 if self.time else 1
        fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 2.6), squeeze=False)
        ax = axes[0, 0]
        for rep, tag, ls in ((self, "init", "-"), (self.after, "trained", "--")):
            if rep is None:
                continue
            idx = [l["index"] for l in rep.layers]
            for key, label in (("out_grad", r"$\|\partial L/\partial h_l\|$"), ("weight_grad", r"$\|\partial L/\partial W_l\|$")):
                y = [l[key] if l[key] and l[key] > 0 else np.nan for l in rep.layers]
                ax.plot(idx, y, ls, marker="o", ms=2.5, lw=1, label=f"{label} ({tag})")
        ax.set_yscale("log")
        ax.set_xlabel("layer (input side = 0)")
        ax.set_title(f"verdict: {self.verdict}")
        ax.legend(fontsize=6)
        if self.time:
            ax = axes[0, 1]
            ax.plot(range(len(self.time)), self.time, lw=1)
            ax.set_yscale("log")
            ax.set_xlabel("time step t")
            ax.set_ylabel(r"$\|\partial L/\partial x_t\|$")
            ax.set_title(f"through time: {self.time_verdict}")
        fig.tight_layout()
        return fig


def _first_tensor(out):
    """The tensor a model's output leads with: itself, the first of a tuple or list, or of a
    mapping its 'logits' (Hugging Face's ModelOutput is one) or else its first tensor value."""
    if torch.is_tensor(out):
        return out
    if isinstance(out, (tuple, list)) and out:
        return _first_tensor(out[0])
    if isinstance(out, Mapping) and out:
        if "logits" in out:
            return _first_tensor(out["logits"])
        return next((t for t in map(_first_tensor, out.values()) if t is not None), None)
    return None


def _loss(out: torch.Tensor, loss: str | None, target=None):
    if out.dim() == 3:                       # (B, T, C) per-step outputs: every step counts
        out = out.reshape(-1, out.shape[-1])
        target = target.reshape(-1) if target is not None and target.dim() > 1 else target
    kind = loss or ("xent" if out.dim() == 2 and out.shape[-1] > 1 else "mse")
    if kind == "xent":
        if target is None or target.shape[0] != out.shape[0]:
            target = torch.randint(0, out.shape[-1], (out.shape[0],), generator=torch.Generator().manual_seed(0))
        return nn.functional.cross_entropy(out, target.long())
    if target is None or target.shape != out.shape:
        target = torch.zeros_like(out)
    return nn.functional.mse_loss(out, target.to(out.dtype))


def _local_ranges(vals: list) -> list:
    """Maximal runs of at least THRESHOLDS["local_min_layers"] consecutive layers whose local
    factors are all below / all above the thresholds."""
    out, cur = [], None
    for i in range(1, len(vals)):
        a, b = vals[i - 1], vals[i]
        if not (a and b and a > 0 and b > 0):
            continue
        f = a / b   # input side over output side: < 1 means the gradient shrinks towards the input
        kind = ("vanishing" if f < THRESHOLDS["local_low"] else
                "exploding" if f > THRESHOLDS["local_high"] else None)
        if kind and cur and cur["kind"] == kind and cur["last"] == i - 1:
            cur["last"], cur["factors"] = i, cur["factors"] + [f]
        elif kind:
            cur = {"kind": kind, "first": i - 1, "last": i, "factors": [f]}
            out.append(cur)
    return [{"kind": r["kind"], "layers": [r["first"], r["last"]],
             "mean_factor_per_layer": float(np.exp(np.mean(np.log(r["factors"]))))} for r in out
            if r["last"] - r["first"] + 1 >= THRESHOLDS["local_min_layers"]]


def _verdict(ratio):
    if ratio is None:
        return "healthy"
    if not math.isfinite(ratio):   # inf, or nan from gradients that overflowed
        return "exploding"
    if ratio < THRESHOLDS["vanishing_below"]:
        return "vanishing"
    if ratio > THRESHOLDS["exploding_above"]:
        return "exploding"
    return "healthy"


def _theory(layers_mod, acts, x) -> dict | None:
    """Mean-field per-layer decay for a plain Linear stack with one known activation."""
    from vgbench import theory
    names = {type(a).__name__.lower() for a in acts}
    known = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu"}
    if len(layers_mod) < 3 or not all(isinstance(m, nn.Linear) for m in layers_mod) or len(names) != 1 \
            or next(iter(names)) not in known:
        return None
    act = known[next(iter(names))]

    def var(m):  # (sigma_w^2 = Var(W) fan_in, sigma_b^2) measured on the module's own weights
        sb2 = float(m.bias.detach().var()) if m.bias is not None and m.bias.numel() > 1 else 0.0
        return float(m.weight.detach().var()) * m.weight.shape[1], sb2
    sw2, sb2 = var(layers_mod[0])
    # pre-activation variance of the first layer, averaged over the examples' own input norms
    q = sw2 * float(x.float().reshape(len(x), -1).pow(2).mean()) + sb2
    logs = []
    for nxt in layers_mod[1:]:
        sw2, sb2 = var(nxt)
        # ||dL/dh_l|| / ||dL/dh_{l+1}|| = sqrt(chi): the backward pass goes through the next weights
        logs.append(0.5 * math.log10(max(theory.chi(act, sw2, q), 1e-300)))
        q = sw2 * theory.second_moment(act, q) + sb2
    return {"activation": act, "predicted_log10_factor_per_layer": float(np.mean(logs))}


def measure(model: nn.Module, x: torch.Tensor, target=None, loss: str | None = None) -> Report:
    """One forward and backward pass of `model` on `x` with hooks; the model is left as it was
    (hooks removed, gradients cleared)."""
    layers, acts, out_norms, act_stats, handles = [], [], {}, [], []
    rec_mods = [m for m in model.modules() if isinstance(m, RECURRENT)]

    def fwd(mod, inp, out):
        if mod not in layers:
            layers.append(mod)
        t = _first_tensor(out)
        if t is not None and t.requires_grad:
            t.register_hook(lambda g, mod=mod: out_norms.__setitem__(mod, norm(g)))

    embedded = []   # integer (token) inputs: the first embedding's output, whose gradient is kept

    def emb_fwd(mod, inp, out):
        if not embedded and out.requires_grad:
            out.retain_grad()
            embedded.append(out)

    def act_fwd(mod, inp, out):
        t = _first_tensor(out)
        if t is None:
            return
        a = t.detach()
        units = a.transpose(0, 1).reshape(a.shape[1], -1) if a.dim() > 2 else a.T
        entry = {"module": type(mod).__name__, "index": len(acts)}
        if isinstance(mod, RELU_LIKE):
            entry["dead"] = float((units <= 0).all(1).float().mean())
        for cls, (name, dfun) in SATURATING.items():
            if isinstance(mod, cls):
                entry["saturated"] = float((dfun(a) < THRESHOLDS["saturated_derivative"]).float().mean())
        acts.append(mod)
        act_stats.append(entry)

    for m in model.modules():
        if len(list(m.children())) == 0 and isinstance(getattr(m, "weight", None), torch.Tensor) \
                and m.weight.requires_grad or isinstance(m, LAYERS):
            handles.append(m.register_forward_hook(fwd))
        if isinstance(m, RELU_LIKE + tuple(SATURATING)):
            handles.append(m.register_forward_hook(act_fwd))
        if isinstance(m, nn.Embedding):
            handles.append(m.register_forward_hook(emb_fwd))
    x = x.detach().clone()   # its own dtype: token indices stay integers, a float64 model gets float64
    if x.is_floating_point():
        x.requires_grad_(bool(rec_mods))
    was_training = model.training
    try:
        model.zero_grad(set_to_none=True)
        out = _first_tensor(model(x))
        if out is None:
            raise ConfigError("the model's output is not a tensor, a tuple starting with one or a mapping "
                              "holding one ('logits' first)")
        L = _loss(out, loss, target)
        L.backward()
    finally:
        for h in handles:
            h.remove()
    rows = []
    for i, m in enumerate(layers):
        # weight, weight_ih_l0, ...; attention: in_proj_weight (or q/k/v_proj_weight) and out_proj.weight
        ws = [p for n, p in m.named_parameters() if "weight" in n.rsplit(".", 1)[-1]]
        wg = math.sqrt(sum(norm(p.grad) ** 2 for p in ws if p.grad is not None)) if ws else None
        name = next((n for n, mm in model.named_modules() if mm is m), type(m).__name__)
        rows.append({"index": i, "name": name or type(m).__name__, "type": type(m).__name__,
                     "weight_grad": wg, "out_grad": out_norms.get(m)})
    sig = [r["out_grad"] or r["weight_grad"] for r in rows]
    ratio = (sig[0] / sig[-1]) if len(sig) >= 2 and sig[0] is not None and sig[-1] else None
    verdict, note = _verdict(ratio), None
    if not math.isfinite(float(L.detach())) or any(v is not None and not math.isfinite(v) for v in sig):
        verdict, ratio = "exploding", None
        note = (f"the loss ({float(L.detach()):.3g}) or a gradient is not finite on a finite input: the signal overflowed "
                f"{out.dtype}, so the per-layer gradients are not defined")
    elif len(sig) >= 2 and not any(sig):
        verdict = "vanishing"
        note = "no gradient reaches any layer (every norm is 0: dead or saturated units everywhere)"
    elif ratio is None:
        frozen = sum(1 for m in model.modules() if not list(m.children())
                     and isinstance(getattr(m, "weight", None), torch.Tensor) and not m.weight.requires_grad)
        note = (f"{len(sig)} layer(s) with trainable weights measured"
                + (f" ({frozen} with frozen weights are not)" if frozen else "")
                + (", the first or last without a gradient" if len(sig) >= 2 else "")
                + ": no first/last ratio, so nothing to call vanishing or exploding across depth")
    time, tverdict = [], None
    # per time step: dL/dx_t, or for token inputs dL/de_t at the embedding's output
    g = x.grad if x.grad is not None else (embedded[0].grad if embedded else None)
    if rec_mods and g is not None and g.dim() == 3:
        tdim = 1 if getattr(rec_mods[0], "batch_first", False) else 0
        g = g.transpose(0, tdim) if tdim else g
        time = [norm(v) for v in g.reshape(g.shape[0], -1)]
        tverdict = _verdict(time[0] / time[-1] if time[-1] > 0 else None)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return Report(layers=rows, verdict=verdict, ratio=ratio, ranges=_local_ranges(sig), time=time,
                  time_verdict=tverdict, theory=_theory(layers, acts, x.detach()), loss=float(L.detach()),
                  activations=act_stats, note=note)


def _provenance(claim) -> dict:
    """The commits and CPU kernel sets a claims.csv row's runs were trained at, as the stats stage
    counted them ("<commit> (n); ..."; None where the stats stage that wrote it predates them)."""
    return {k: claim.get(k) if isinstance(claim.get(k), str) else None for k in ("commits", "kernels")}


def _cite(src: str, ev: list) -> str:
    """A source file with the commits and kernel sets its cited claims' runs were trained at."""
    names = {k: dict.fromkeys(w.rsplit(" (", 1)[0] for e in ev if e[k] for w in e[k].split("; "))
             for k in ("commits", "kernels")}
    if not names["commits"]:
        return src
    return (f"{src}, runs at commit{'s' * (len(names['commits']) > 1)} " + ", ".join(names["commits"])
            + ("" if not names["kernels"] else ", CPU kernels not recorded" if list(names["kernels"]) == ["unknown"]
               else " with " + ", ".join(names["kernels"]) + " kernels"))


def advice(model: nn.Module, rep: Report, results: str | Path | None = None) -> list:
    """The mitigations that apply to this model and verdict, each with the benchmark's measured
    effect (claims.csv of `results`, else the numbers shipped with vgbench)."""
    import pandas as pd
    if results:
        src = paths.stats("claims", results)
        claims = pd.read_csv(src).assign(_src=str(src)) if src.is_file() else pd.DataFrame()
    else:
        claims = pd.concat([pd.read_csv(f).assign(_src=f"shipped with vgbench: {f.name}")
                            for f in SHIPPED if f.is_file()], ignore_index=True)
    claims = claims.drop_duplicates("id").set_index("id") if len(claims) else claims
    mods = list(model.modules())
    saturating = any(isinstance(m, tuple(SATURATING)) for m in mods)
    tanh = any(isinstance(m, nn.Tanh) for m in mods)
    has_norm = any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) for m in mods)
    vanilla_rnn = any(isinstance(m, nn.RNN) for m in mods)
    keys = []
    vanish = rep.verdict == "vanishing" or rep.time_verdict == "vanishing"
    if rep.verdict == "vanishing":
        keys += (["activation"] if saturating else []) + (["orthogonal"] if tanh else []) \
            + ([] if has_norm else ["normalise", "lsuv"]) + ["skips", "deep_supervision"]
    if rep.time_verdict == "vanishing" and vanilla_rnn:
        keys += ["gated", "identity_rnn"]
    if rep.time_verdict == "vanishing" and any(isinstance(m, nn.LSTM) for m in mods):
        keys += ["forget_bias"]
    if rep.verdict == "exploding" or rep.time_verdict == "exploding":
        keys += ["clipping", "lower_lr", "init"] + ([] if has_norm else ["branch_scaling"])
    if rep.verdict != "healthy" and any(isinstance(m, nn.TransformerEncoderLayer) and not m.norm_first for m in mods):
        keys += ["norm_first"]
    out = []
    for k in dict.fromkeys(keys):
        why, ids, what = ADVICE[k]
        ev, by_src = [], {}
        for cid in ids:
            if cid in claims.index:
                r = claims.loc[cid]
                ev.append({"claim": str(r["claim"]), "verdict": str(r["verdict"]), "effect": float(r["effect"]),
                           "ci": [float(r["ci_low"]), float(r["ci_high"])], "quantity": str(r["quantity"]),
                           **_provenance(r)})
                by_src.setdefault(str(r["_src"]), []).append(ev[-1])
        out.append({"mitigation": what, "why": why, "evidence": ev,
                    "evidence_source": "; ".join(_cite(s, e) for s, e in by_src.items()) or None})
    if not vanish and rep.verdict == "healthy" and rep.time_verdict in (None, "healthy"):
        out.append({"mitigation": "none needed", "why": "gradients are within the thresholds", "evidence": [],
                    "evidence_source": None})
    return out


def _check_arguments(model, x, loss, steps, lr) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"example_input must be a torch.Tensor (a batch), got {type(x).__name__}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ConfigError("example_input has NaN or infinite values")
    if loss not in (None, "xent", "mse"):
        raise ConfigError(f"loss must be 'xent', 'mse' or None (chosen from the output), got {loss!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be an integer >= 0, got {steps!r}")
    if not (isinstance(lr, (int, float)) and 0 < lr < math.inf):
        raise ConfigError(f"lr must be a positive finite number, got {lr!r}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("the model has no trainable parameters (none requires grad): there is no gradient to measure")


def again_in_float64(model: nn.Module, x: torch.Tensor, rep: Report, target=None, loss: str | None = None):
    """Where a float32 model's measurement has a layer whose gradient norm is below SMALL_NORM (1e-10,
    the instruments' own threshold: below it float32's backward can lose digits, or reach 0) while
    the loss is finite, the same measurement through a float64 copy of the model on the same input,
    as a run does for its ratio at init: {"layers": those indices, "ratio": float64's first/last
    ratio, "layers_float64": its rows} (or {"error": ...} where the model cannot be copied or run in
    float64). None where no layer is that small. The model is untouched."""
    from vgbench.instruments import SMALL_NORM, as_float64, float64_copy
    if next((p.dtype for p in model.parameters() if p.is_floating_point()), None) != torch.float32:
        return None
    low = [r["index"] for r in rep.layers if any(v is not None and math.isfinite(v) and v < SMALL_NORM
                                                 for v in (r["out_grad"], r["weight_grad"]))]
    if not low or rep.loss is None or not math.isfinite(rep.loss):
        return None
    try:
        r64 = measure(float64_copy(model), as_float64(x), as_float64(target), loss)
    except Exception as e:   # a user's module that cannot be deep-copied or run in float64
        return {"layers": low, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"}
    return {"layers": low, "ratio": r64.ratio, "layers_float64": r64.layers}


def in_model_dtype(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Float inputs in the dtype of the model's parameters (a bfloat16 or float64 model fed float32
    fails in its first layer); token indices stay integers."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    return x.to(dtype) if x.is_floating_point() and dtype is not None else x


def diagnose(model: nn.Module, example_input: torch.Tensor, target=None, loss: str | None = None,
             steps: int = 0, lr: float = 0.01, results=None) -> Report:
    """Measure at initialisation and, with steps > 0, again after `steps` SGD steps on the
    same batch (the model is trained in place). Bad arguments raise ConfigError (a ValueError)."""
    _check_arguments(model, example_input, loss, steps, lr)
    example_input = in_model_dtype(model, example_input)
    rep = measure(model, example_input, target, loss)
    rep.float64 = again_in_float64(model, example_input, rep, target, loss)
    rep.advice = advice(model, rep, results)
    if steps > 0:
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            out = _first_tensor(model(example_input))
            _loss(out, loss, target).backward()
            opt.step()
        rep.after = measure(model, example_input, target, loss)
        rep.after.float64 = again_in_float64(model, example_input, rep.after, target, loss)
    return rep


# --- command line -------------------------------------------------------------------------------

def load_target(target: str) -> nn.Module:
    """'pkg.module:factory' or 'path/to/file.py:factory' -> the nn.Module the factory returns."""
    import importlib
    import importlib.util
    if ":" not in target:
        raise ConfigError(f"TARGET must be 'module:factory' or 'file.py:factory', got {target!r}")
    where, name = target.rsplit(":", 1)
    # imports resolve as `python file.py` / `python -m module` would: from the file's folder, or
    # the working directory (the `vgbench` script, unlike `python -m`, does not put it on the path)
    sys.path.insert(0, str(Path(where).resolve().parent) if where.endswith(".py") else str(Path.cwd()))
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"TARGET file not found: {path}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: report it as their error
        raise ConfigError(f"cannot import {where!r}: {type(e).__name__}: {e}") from None
    if not hasattr(mod, name):
        raise ConfigError(f"{where!r} has no attribute {name!r}")
    obj = getattr(mod, name)
    try:
        model = obj if isinstance(obj, nn.Module) else obj()
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"calling {name}() failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{name}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _shape(s: str) -> tuple:
    try:
        shape = tuple(int(v) for v in s.split(","))
    except ValueError:
        raise ConfigError(f"--input-shape must be comma-separated positive integers, e.g. 3,32,32; got {s!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise ConfigError(f"--input-shape must be positive integers, got {s!r}")
    return shape


def _spans(idx: list) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start = [], None
    for i, k in enumerate(idx):
        if start is None:
            start = k
        if i + 1 == len(idx) or idx[i + 1] != k + 1:
            out.append(f"{start}-{k}" if k > start else f"{start}")
            start = None
    return ", ".join(out)


def _table(rep: Report, color: bool) -> str:
    col = {"vanishing": "\033[33m", "exploding": "\033[31m", "healthy": "\033[32m"} if color else {}
    end = "\033[0m" if color else ""
    lines = [f"{'#':>3}  {'layer':<28} {'type':<12} {'|dL/dW|':>10} {'|dL/dh|':>10}"]
    for l in rep.layers:
        fmt = (lambda v: f"{v:10.3g}" if v is not None else f"{'--':>10}")
        lines.append(f"{l['index']:>3}  {l['name'][:28]:<28} {l['type'][:12]:<12} {fmt(l['weight_grad'])} "
                     f"{fmt(l['out_grad'])}")
    ratio = f"{rep.ratio:.3g}" if rep.ratio is not None else "--"
    lines.append(f"verdict: {col.get(rep.verdict, '')}{rep.verdict}{end} (first/last |dL/dh| = {ratio}; "
                 f"vanishing < {THRESHOLDS['vanishing_below']:g}, exploding > {THRESHOLDS['exploding_above']:g})")
    if rep.note:
        lines.append(f"  {rep.note}")
    if rep.float64:
        f = rep.float64
        head = (f"  {len(f['layers'])} layer(s) with a gradient norm below 1e-10, where float32 can lose digits "
                f"(layers {_spans(f['layers'])}); ")
        if "error" in f:
            lines.append(head + f"a float64 copy of the model failed: {f['error']}")
        elif f["ratio"] == 0:
            lines.append(head + "a float64 copy of the model reads 0 as well: a true zero, not underflow")
        else:
            lines.append(head + ("through a float64 copy of the model first/last |dL/dh| = "
                                 + (f"{f['ratio']:.3g}" if f["ratio"] is not None else "undefined")))
    for r in rep.ranges:
        lines.append(f"  layers {r['layers'][0]}-{r['layers'][1]}: {r['kind']}, x{r['mean_factor_per_layer']:.2f} per "
                     f"layer (thresholds {THRESHOLDS['local_low']} / {THRESHOLDS['local_high']})")
    if rep.time:
        lines.append(f"through time: {rep.time_verdict} (|dL/dx_0| / |dL/dx_T| = {rep.time[0] / max(rep.time[-1], 1e-300):.3g})")
    if rep.theory:
        meas = np.log10([l["out_grad"] for l in rep.layers[:-1] if l["out_grad"]])
        slope = float(np.polyfit(np.arange(len(meas)), meas, 1)[0]) if len(meas) > 1 else float("nan")
        lines.append(f"mean-field ({rep.theory['activation']}): per layer towards the output, log10 |dL/dh| changes by "
                     f"{-rep.theory['predicted_log10_factor_per_layer']:+.3f} predicted, {slope:+.3f} measured")
    for a in rep.advice:
        ev = "; ".join(f"{e['claim']}: {e['verdict']}, effect {e['effect']:.3g} [{e['ci'][0]:.3g}, {e['ci'][1]:.3g}]"
                       for e in a["evidence"])
        lines.append(f"advice: {a['mitigation']}" + (f" -- benchmark: {ev}" if ev else "")
                     + (f" ({a['evidence_source']})" if a["evidence"] else ""))
    return "\n".join(lines)


def _check_paths(args) -> None:
    """--out and --results, checked before any work: nothing is computed only to fail at the end."""
    out, blocker = Path(args.out), paths.file_in_the_way(args.out)
    if blocker == out:
        raise ConfigError(f"--out {out} is an existing file, not a folder")
    if blocker is not None:
        raise ConfigError(f"--out {out}: {blocker} is a file, so the folder cannot be made under it")
    if args.results is not None:
        claims = paths.stats("claims", args.results)
        if not claims.is_file():
            raise ConfigError(f"--results {args.results}: no {claims} there (give a results folder the "
                              "pipeline's stats stage has written, or leave --results out for the shipped numbers)")


def main(args) -> int:
    if not (args.task or args.input_shape):
        raise ConfigError("give --input-shape (one example's shape, e.g. 40 or 3,32,32) or --task")
    shape = _shape(args.input_shape) if args.input_shape else None
    _check_paths(args)
    torch.manual_seed(args.seed)   # the factory's initialisation, so a diagnosis can be repeated
    model = load_target(args.target)
    if args.task:
        from vgbench.config import load
        from vgbench.data import load_task
        seq = args.task in ("adding", "copy", "temporal_order", "mnist1d_seq", "digits_seq")
        cfg = load({"task": args.task, "model": "rnn" if seq else "mlp"})
        task = load_task(cfg)
        x, y = task.x["train"][:args.batch], task.y["train"][:args.batch]
        if shape:
            if math.prod(shape) != x[0].numel():
                raise ConfigError(f"--input-shape {args.input_shape} has {math.prod(shape)} values but one "
                                  f"{args.task} example has {x[0].numel()} (shape {tuple(x.shape[1:])})")
            x = x.reshape(len(x), *shape)
    else:
        vocab = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
        gen = torch.Generator().manual_seed(0)
        try:
            if vocab:   # a model that embeds tokens takes indices every embedding table can look up
                x, y = torch.randint(0, min(vocab), (args.batch, *shape), generator=gen), None
                print(f"input: random token indices in [0, {min(vocab)}) (the model has an nn.Embedding)")
            else:
                x, y = torch.randn((args.batch, *shape), generator=gen), None
        except RuntimeError as e:
            raise ConfigError(f"cannot make a random batch of shape {(args.batch, *shape)}: "
                              f"{' '.join(str(e).split())[:200]}") from None
    if in_model_dtype(model, x).dtype != x.dtype:   # diagnose() casts it; say so
        print(f"input: {in_model_dtype(model, x).dtype} (the model's parameters')")
    try:
        rep = diagnose(model, x, y, args.loss, args.steps, args.lr, args.results)
    except ConfigError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as e:   # the user's forward rejected the input
        raise ConfigError(f"the model failed on input of shape {tuple(x.shape)}: {type(e).__name__}: "
                          f"{' '.join(str(e).split())[:300]}") from None
    print(_table(rep, sys.stdout.isatty()))
    if rep.after is not None:
        print(f"\nafter {args.steps} SGD steps (lr {args.lr}):")
        print(_table(rep.after, sys.stdout.isatty()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from vgbench.figures import style
    (out / "diagnose.json").write_text(json.dumps(rep.to_dict(), indent=2, default=float))
    style.save(rep.plot(), str(out / "diagnose"), {"figure": "diagnose", "target": args.target})
    print(f"\nwritten: {out / 'diagnose.json'}, {out / 'diagnose.pdf'}, {out / 'diagnose.png'}")
    return 0


class _CallableModule(type(sys)):
    """`vgbench.diagnose(model, example_input)` -- the notebook API the module is named after --
    calls diagnose() above; `from vgbench.diagnose import diagnose` keeps working."""

    def __call__(self, model: nn.Module, example_input: torch.Tensor, **kwargs) -> Report:
        return diagnose(model, example_input, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
