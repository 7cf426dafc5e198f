"""Gradient-flow instruments: cheap per-step measurements into preallocated buffers.

At each step of `schedule(steps, points)` the trainer runs the forward pass with
capture=True and, after backward, calls `Recorder.record(step, model)`, which reads
  weight_grad  ||dL/dW_l||       per main weight matrix (input side = index 0, head last)
  signal       ||dL/dh_l||       back-propagated error per hidden layer; last index = logits
  hidden_t     ||dL/dh_t||       per layer (name) and time step (index), recurrent models
  saturation   fraction of activation values near an asymptote (sigmoid/tanh/softsign)
  dead         fraction of units whose activation is <= 0 on the whole batch (ReLU family)
  jacobian_sv  singular values of d h_L / d x (last hidden layer w.r.t. the input), per input
               example (name) and rank (index), at step 0, when the config asks (jacobian_inputs)
with one `torch._foreach_norm` per kind (`norms`). `frame()` turns the buffers into the long table
of the run-directory contract: step, kind, index, name, value.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from vgbench.models import RELU_FAMILY, SATURATING
from vgbench.paths import GRADIENT_COLUMNS


def schedule(steps: int, points: int) -> list[int]:
    """Step 0, then `points` log-spaced steps up to and including `steps` (deduplicated)."""
    if steps <= 0:
        return [0]
    log = np.unique(np.round(np.logspace(0, np.log10(steps), points)).astype(int))
    return sorted({0, *log.tolist(), steps})


# below this a float32 norm is computed again in float64 (see norms)
SMALL_NORM = 1e-10


def norms(ts: list[torch.Tensor]) -> torch.Tensor:
    """||t|| of each tensor, as float32. torch's float32 norm sums float32 squares, so where the
    elements are below ~3e-23 (squares below float32's smallest value) the norm reads 0 -- or,
    a little above, loses digits -- although the tensor is far from underflowing itself (a
    50-layer sigmoid net's first-layer gradient, ~1e-30, read 0). Norms below SMALL_NORM are
    therefore computed again in float64; the rest are float32's own, bit for bit."""
    n = torch.stack(torch._foreach_norm(ts)) if ts else torch.zeros(0)
    for k in (n < SMALL_NORM).nonzero().flatten().tolist():
        n[k] = ts[k].detach().double().norm().to(n.dtype)
    return n


def norm(t: torch.Tensor) -> float:
    """One tensor's norm, the small ones in float64 as in `norms` (and kept in float64)."""
    n = float(t.norm())
    return n if n >= SMALL_NORM else float(t.detach().double().norm())


def _small_again(v: torch.Tensor, again) -> torch.Tensor:
    """v (float32 norms) with its entries below SMALL_NORM taken from again(), the same
    computation in float64."""
    small = v < SMALL_NORM
    return torch.where(small, again().to(v.dtype), v) if bool(small.any()) else v


def _of_a_pass(v) -> bool:
    """Whether v is (or holds) a tensor computed in a forward pass (not a leaf)."""
    if isinstance(v, torch.Tensor):
        return v.grad_fn is not None
    if isinstance(v, (list, tuple)):
        return any(_of_a_pass(a) for a in v)
    return isinstance(v, dict) and any(_of_a_pass(a) for a in v.values())


def as_float64(t):
    """A float tensor in float64; integer tensors (labels, token indices) and None as they are."""
    return t.double() if t is not None and t.is_floating_point() else t


def float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of `model` without gradients; what the last forward pass left on its
    modules (outputs, captured activations) is not copied. The model is untouched."""
    import copy
    memo = {id(v): None if isinstance(v, torch.Tensor) else type(v)()
            for m in model.modules() for v in vars(m).values() if _of_a_pass(v)}
    net = copy.deepcopy(model, memo).double()
    for p in net.parameters():
        p.grad = None
    return net


def ratio_float64(model, loss_of) -> float:
    """||dL/dW_first|| / ||dL/dW_last|| of `model` computed again through a float64 copy of it.

    `norms` computes a tiny norm in float64, but from float32 gradients: a backward signal that has
    fallen into float32's subnormal range (below 1.2e-38) has lost its digits on the way, or reached
    0, before any norm is taken (the default profile's 50-layer sigmoid nets: ratio 0 in float32,
    10^-42.6 in float64). Here the forward and backward run in float64 from the same weights and
    batch. loss_of(net, to) is the loss of `net` on the batch passed through `to` (float tensors
    to float64); the model itself is untouched."""
    net = float64_copy(model)
    loss_of(net, as_float64).backward()
    ws = [p for _, p in net.weights()]
    g = [p.grad if p.grad is not None else torch.zeros_like(p) for p in (ws[0], ws[-1])]
    return float(g[0].norm() / g[1].norm())


class Recorder:
    def __init__(self, model, steps: list[int], activation: str, recurrent: bool):
        self.steps = list(steps)
        self.row = {s: i for i, s in enumerate(self.steps)}
        self.names = [n for n, _ in model.weights()]
        self.params = [p for _, p in model.weights()]
        self.activation = activation
        self.recurrent = recurrent
        self.units_last = getattr(model, "UNITS_LAST", False)
        self.n = len(self.steps)
        self.filled = torch.zeros(self.n, dtype=torch.bool)
        self.buf: dict[str, torch.Tensor] = {"weight_grad": torch.full((self.n, len(self.params)), float("nan"))}

    def _buf(self, kind, shape):
        if kind not in self.buf:
            self.buf[kind] = torch.full((self.n, *shape), float("nan"))
        return self.buf[kind]

    @torch.no_grad()
    def record(self, step: int, model) -> None:
        i = self.row[step]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.buf["weight_grad"][i] = norms(grads).cpu()
        cap = model.captured
        if self.recurrent:
            h_t = cap["h_t"]  # list over layers of lists over time
            flat = [h.grad if h.grad is not None else torch.zeros_like(h) for layer in h_t for h in layer]
            per_t = norms(flat).view(len(h_t), -1).cpu()
            self._buf("hidden_t", per_t.shape)[i] = per_t
            out = cap["out"].grad
            sig = torch.cat([_small_again(per_t.pow(2).sum(1).sqrt(), lambda: per_t.double().pow(2).sum(1).sqrt()),
                             _small_again(out.norm().view(1), lambda: out.double().norm().view(1)).cpu()])
        else:
            hs = [h.grad if h.grad is not None else torch.zeros_like(h) for h in cap["h"]]
            sig = norms(hs).cpu()
            if "h_seq" in cap:   # a transformer: ||dL/dh_{l,t}|| per block (name) and position (index)
                g = torch.stack([h.grad if h.grad is not None else torch.zeros_like(h) for h in cap["h_seq"]])
                self._buf("hidden_t", g.shape[::2])[i] = _small_again(
                    g.pow(2).sum((1, 3)).sqrt(), lambda: g.double().pow(2).sum((1, 3)).sqrt()).cpu()
        self._buf("signal", sig.shape)[i] = sig
        acts = cap["act"]
        if self.activation in SATURATING:
            f = SATURATING[self.activation]
            self._buf("saturation", (len(acts),))[i] = torch.stack([f(a).float().mean() for a in acts]).cpu()
        elif self.activation in RELU_FAMILY:
            # a unit is dead if its activation is <= 0 for every example (and time step)
            self._buf("dead", (len(acts),))[i] = torch.stack(
                [(self._units(a) <= 0).all(0).float().mean() for a in acts]).cpu()
        self.filled[i] = True
        model.captured = {}

    def record_jacobian(self, step: int, svs: torch.Tensor) -> None:
        """Singular values (examples x k, descending) of the input-output Jacobian at a step."""
        self.jac = (step, svs.detach().cpu())

    def _units(self, a: torch.Tensor) -> torch.Tensor:
        """Activations as (observations, units): a unit is a neuron, a conv channel, or a
        recurrent hidden unit across all time steps."""
        if self.units_last:
            return a.reshape(-1, a.shape[-1])
        if a.dim() > 2:
            return a.transpose(0, 1).reshape(a.shape[1], -1).T
        return a

    def small_first(self, step: int) -> bool:
        """Whether the first layer's recorded gradient norm at `step` is below SMALL_NORM."""
        return bool(self.buf["weight_grad"][self.row[step], 0] < SMALL_NORM)

    def ratio(self, step: int = 0) -> float:
        """||dL/dW_first|| / ||dL/dW_last|| at a recorded step."""
        w = self.buf["weight_grad"][self.row[step]]
        return float(w[0] / w[-1])

    def frame(self) -> pd.DataFrame:
        rows = []
        steps = np.array(self.steps)
        done = self.filled.numpy()
        for kind, buf in self.buf.items():
            b = buf.numpy()[done]
            st = steps[done]
            if kind == "hidden_t":
                L, T = b.shape[1:]
                s, l, t = np.meshgrid(st, np.arange(L), np.arange(T), indexing="ij")
                rows.append(pd.DataFrame({"step": s.ravel(), "kind": kind, "index": t.ravel(),
                                          "name": np.char.add("layer", l.ravel().astype(str)),
                                          "value": b.ravel()}))
                continue
            K = b.shape[1]
            names = self.names if kind == "weight_grad" else [
                ("logits" if kind == "signal" and k == K - 1 else f"layer{k}") for k in range(K)]
            s, k = np.meshgrid(st, np.arange(K), indexing="ij")
            rows.append(pd.DataFrame({"step": s.ravel(), "kind": kind, "index": k.ravel(),
                                      "name": np.asarray(names)[k.ravel()], "value": b.ravel()}))
        if getattr(self, "jac", None) is not None:
            step, sv = self.jac
            e, k = np.meshgrid(np.arange(sv.shape[0]), np.arange(sv.shape[1]), indexing="ij")
            rows.append(pd.DataFrame({"step": step, "kind": "jacobian_sv", "index": k.ravel(),
                                      "name": np.char.add("example", e.ravel().astype(str)),
                                      "value": sv.numpy().ravel().astype("float64")}))
        df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
            columns=list(GRADIENT_COLUMNS))
        return df.astype({"step": "int64", "index": "int64", "value": "float64"})


def jacobian_singular_values(net, x: torch.Tensor) -> torch.Tensor:
    """Singular values of the input-output Jacobian d h_L / d x of a feed-forward net (h_L: the last
    hidden layer, before the head), one row per example of x, descending; in eval mode, so batch
    norm uses its running statistics and one example is a valid batch."""
    was = net.training
    net.eval()
    depth = net.cfg.depth
    out = []
    for xi in x:
        jac = torch.func.jacrev(lambda v: net(v[None], upto=depth)[0])(xi)   # (width, *input shape)
        out.append(torch.linalg.svdvals(jac.reshape(jac.shape[0], -1)))
    net.train(was)
    return torch.stack(out).detach()
