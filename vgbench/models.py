"""Models with every knob of the config vocabulary, built from a resolved RunConfig.

Every model exposes the same instrumentation surface, used by `vgbench.instruments`:
  `weights()`    -> list[(name, Parameter)], the main weight matrices from input (0) to
                    the output head (last); biases, norm and skip parameters excluded.
  `forward(x, capture=False)` -> output. With capture=True the model keeps, in
                    `self.captured`, the hidden outputs h_l (with retain_grad, so their
                    gradients can be read after backward), the activation outputs a_l
                    (for saturated / dead fractions) and, for recurrent models, h_t per
                    layer and time step.
Feed-forward hidden layer l: a_l = act(norm(op_l(h_{l-1}))). Residual nets group layers
in blocks of two and add a skip at the end of each block: h = a + skip(block input); the
skip is the identity, or a projection (linear / 1x1 conv, no bias) where shapes change.
So a plain and a residual net differ only by the skips.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vgbench.config import RunConfig
from vgbench.data import Task


class SigmoidGradC(torch.autograd.Function):
    """sigma(x) forward; sigma(x)(1 - sigma(x)) + c backward (Roodschild et al. 2020)."""

    @staticmethod
    def forward(ctx, x, c: float):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        ctx.c = c
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (y * (1 - y) + ctx.c), None


class SigmoidC(nn.Module):
    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        return SigmoidGradC.apply(x, self.c)

    def extra_repr(self):
        return f"c={self.c}"


def make_activation(cfg: RunConfig, width: int) -> nn.Module:
    name = cfg.activation
    if name == "sigmoid":
        return SigmoidC(cfg.sigmoid_grad_c) if cfg.sigmoid_grad_c > 0 else nn.Sigmoid()
    if name == "leaky_relu":
        return nn.LeakyReLU(cfg.leaky_relu_slope)
    if name == "prelu":
        return nn.PReLU(width)  # one learnable slope per unit/channel, init 0.25
    return {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "selu": nn.SELU,
            "gelu": nn.GELU, "softsign": nn.Softsign}[name]()


# Where an activation output counts as saturated (|derivative| tiny) and which families
# can have dead units (output <= 0 for the whole batch).
SATURATING = {"sigmoid": lambda a: (a < 0.01) | (a > 0.99),
              "tanh": lambda a: a.abs() > 0.99,
              "softsign": lambda a: a.abs() > 0.99}
RELU_FAMILY = ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu")


def init_weight(w: torch.Tensor, scheme: str, weight_var: float = 1.0) -> None:
    """Initialise one weight matrix/kernel in place. fan_in = in_features x kernel size.
    gaussian: N(0, weight_var / fan_in), the mean-field theory's sigma_w^2."""
    if scheme == "default":
        return  # PyTorch's own: U[+-1/sqrt(fan_in)] (Glorot & Bengio's "standard" init)
    fan_out, fan_in = w.shape[0], w[0].numel()
    with torch.no_grad():
        if scheme == "normal":
            w.normal_(0.0, 1.0)
        elif scheme == "lecun":
            w.normal_(0.0, math.sqrt(1.0 / fan_in))
        elif scheme == "xavier":
            w.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out * w[0, 0].numel())))
        elif scheme == "he":
            w.normal_(0.0, math.sqrt(2.0 / fan_in))
        elif scheme == "orthogonal":
            nn.init.orthogonal_(w)
        elif scheme == "gaussian":
            w.normal_(0.0, math.sqrt(weight_var / fan_in))
        else:
            raise ValueError(f"unknown init {scheme!r}")


def _norm(cfg: RunConfig, width: int, conv_dim: int) -> nn.Module:
    if cfg.norm == "batch":
        return {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[conv_dim](width)
    if cfg.norm == "layer":
        # over all features of one example; GroupNorm(1, C) is LayerNorm over (C, *)
        return nn.LayerNorm(width) if conv_dim == 0 else nn.GroupNorm(1, width)
    return nn.Identity()


LSUV_BATCH = 500


class FeedForward(nn.Module):
    """mlp (conv_dim 0), cnn / resnet (conv_dim 1 on (N,1,L), 2 on (N,1,H,W))."""

    def __init__(self, cfg: RunConfig, task: Task):
        super().__init__()
        self.cfg = cfg
        shape = task.sample_shape
        self.conv_dim = 0 if cfg.model == "mlp" else len(shape) - 1
        in_dim = math.prod(shape) if self.conv_dim == 0 else shape[0]
        W, depth = cfg.width, cfg.depth
        Conv = {1: nn.Conv1d, 2: nn.Conv2d}.get(self.conv_dim)

        def op(i, o):
            return nn.Linear(i, o) if Conv is None else Conv(i, o, 3, padding=1)

        self.ops = nn.ModuleList(op(in_dim if l == 0 else W, W) for l in range(depth))
        self.norms = nn.ModuleList(_norm(cfg, W, self.conv_dim) for _ in range(depth))
        self.acts = nn.ModuleList(make_activation(cfg, W) for _ in range(depth))
        self.head = nn.Linear(W, task.n_out)
        self.skips = nn.ModuleDict()
        if cfg.residual:
            for end in self.block_ends():
                start = end - 1 if end % 2 == 1 else end
                d_in = in_dim if start == 0 else W
                if d_in == W:
                    self.skips[str(end)] = nn.Identity()
                elif Conv is None:
                    self.skips[str(end)] = nn.Linear(d_in, W, bias=False)
                else:
                    self.skips[str(end)] = Conv(d_in, W, 1, bias=False)
        # ReZero (Bachlechner et al. 2020; SkipInit, De & Smith 2020): one learnable scalar per
        # residual branch, 0 at init, so every block starts as the identity
        self.alphas = nn.ParameterDict({k: nn.Parameter(torch.zeros(())) for k in self.skips}
                                       if cfg.residual_branch == "rezero" else {})
        self.aux_layers = []
        self.aux_heads = nn.ModuleDict()
        if cfg.aux_loss_weight > 0:
            self.aux_layers = list(range(cfg.aux_every - 1, depth - 1, cfg.aux_every))
            for l in self.aux_layers:
                self.aux_heads[str(l)] = nn.Linear(W, task.n_out)
        # Fixup (Zhang et al. 2019): a scalar bias before each layer's op and before its activation,
        # and a scalar multiplier per residual branch (init 1); initialisation in _fixup()
        fix = cfg.residual_branch == "fixup"
        self.bias_op = nn.ParameterList(nn.Parameter(torch.zeros(())) for _ in range(depth) if fix)
        self.bias_act = nn.ParameterList(nn.Parameter(torch.zeros(())) for _ in range(depth) if fix)
        self.scales = nn.ParameterDict({k: nn.Parameter(torch.ones(())) for k in self.skips} if fix else {})
        for _, w in self.weights():
            init_weight(w, "orthogonal" if cfg.init == "lsuv" else cfg.init, cfg.weight_var)
        if cfg.init != "default":
            for m in [*self.ops, self.head]:
                if cfg.init == "gaussian" and cfg.bias_var > 0:
                    nn.init.normal_(m.bias, 0.0, math.sqrt(cfg.bias_var))
                else:
                    nn.init.zeros_(m.bias)
        if fix:
            self._fixup()
        if cfg.init == "lsuv":
            lsuv(self, self.lsuv_batch(task))
        self.captured: dict = {}
        self.aux_out: list = []

    def branches(self) -> dict:
        """Residual branch of each block end: the layers it adds to its skip."""
        return {str(end): list(range(end - 1 if end % 2 == 1 else end, end + 1)) for end in self.block_ends()}

    def _fixup(self):
        """Zhang et al. 2019, for branches of m layers among L branches: the branch's layers keep
        the configured init (He in the paper) scaled by L^(-1/(2m-2)), its last layer and the
        head start at zero; the scalar biases start at 0 and the multipliers at 1 (__init__)."""
        branches = self.branches()
        L = len(branches)
        with torch.no_grad():
            for layers in branches.values():
                m = len(layers)
                for l in layers[:-1]:
                    self.ops[l].weight.mul_(L ** (-1.0 / (2 * m - 2)))
                self.ops[layers[-1]].weight.zero_()
            self.head.weight.zero_()
            self.head.bias.zero_()

    def lsuv_batch(self, task: Task) -> torch.Tensor:
        """LSUV's data: one batch of the run's own training set drawn with the run's seed, of
        LSUV_BATCH examples (or batch_size if larger): at 100 the first layer's variance on another
        batch is off by up to 18 % on mnist1d, at 500 by about 6 %."""
        g = torch.Generator().manual_seed(self.cfg.seed)
        n = task.x["train"].shape[0]
        return task.x["train"][torch.randperm(n, generator=g)[:max(self.cfg.batch_size, LSUV_BATCH)]]

    def block_ends(self):
        """Layers that close a residual block: 1, 3, 5, ... and the last layer."""
        d = self.cfg.depth
        return sorted({l for l in range(1, d, 2)} | {d - 1})

    def weights(self):
        return [(f"ops.{l}.weight", m.weight) for l, m in enumerate(self.ops)] + \
               [("head.weight", self.head.weight)]

    def features(self, h):
        """Pool conv feature maps to (N, W) for a linear head."""
        return h if self.conv_dim == 0 else h.flatten(2).mean(-1)

    def layer(self, l, h):
        if self.bias_op:
            return self.acts[l](self.norms[l](self.ops[l](h + self.bias_op[l])) + self.bias_act[l])
        return self.acts[l](self.norms[l](self.ops[l](h)))

    def forward(self, x, capture: bool = False, upto: int | None = None):
        h = x.flatten(1) if self.conv_dim == 0 else x
        hs, acts = [], []
        block_in = h
        ends = set(self.skips.keys())
        depth = self.cfg.depth if upto is None else upto
        self.aux_out = []
        for l in range(depth):
            if str(l) in self.scales:
                # Fixup's block (Zhang et al.'s ResNet): the skip joins before the last activation,
                # h = act(scale * op(h + b) + b' + skip); behind an activation the zero-initialised
                # last layer would stay dead (ReLU'(0) = 0)
                z = self.scales[str(l)] * self.norms[l](self.ops[l](h + self.bias_op[l]))
                h = a = self.acts[l](z + self.bias_act[l] + self.skips[str(l)](block_in))
            elif str(l) in ends:
                a = self.layer(l, h)
                branch = self.alphas[str(l)] * a if str(l) in self.alphas else a
                h = branch + self.skips[str(l)](block_in)
            else:
                a = self.layer(l, h)
                h = a
            if str(l) in ends:
                block_in = h
            if capture:
                h.retain_grad()
                hs.append(h)
                acts.append(a.detach())
            if str(l) in self.aux_heads and self.training:
                self.aux_out.append(self.aux_heads[str(l)](self.features(h)))
        if upto is not None:
            return h
        out = self.head(self.features(h))
        if capture:
            out.retain_grad()
            self.captured = {"h": hs + [out], "act": acts}
        return out


class Recurrent(nn.Module):
    """Stacked rnn / lstm / gru, unrolled in Python so every h_t is a graph node.

    Layer l: input projection x_t W_ih (computed for all t at once), recurrent W_hh, one
    block of rows per gate. Norm 'layer' normalises the summed pre-activations.
    """

    GATES = {"rnn": 1, "lstm": 4, "gru": 3}
    UNITS_LAST = True   # activations are (batch, time, unit)

    def __init__(self, cfg: RunConfig, task: Task):
        super().__init__()
        self.cfg = cfg
        self.kind = cfg.model
        self.per_step = task.loss == "xent_seq"
        G, W = self.GATES[cfg.model], cfg.width
        in_dim = task.sample_shape[-1]
        self.w_ih = nn.ModuleList(nn.Linear(in_dim if l == 0 else W, G * W) for l in range(cfg.depth))
        self.w_hh = nn.ModuleList(nn.Linear(W, G * W, bias=cfg.model == "gru") for _ in range(cfg.depth))
        self.lns = nn.ModuleList(nn.LayerNorm(G * W) if cfg.norm == "layer" else nn.Identity()
                                 for _ in range(cfg.depth))
        self.act = make_activation(cfg, W) if cfg.model == "rnn" else nn.Tanh()
        self.head = nn.Linear(W, task.n_out)
        # torch's fused lstm/gru cells are ~2.3x faster per training step on CPU than the
        # same equations written out; used when there is no layer norm inside the cell.
        self.fused = cfg.model in ("lstm", "gru") and cfg.norm == "none"
        # the fused CUDA lstm cell needs a hidden bias tensor; ours has none (it would be
        # redundant with the input bias), so pass zeros
        self.register_buffer("zero_bias", torch.zeros(G * W), persistent=False)
        # Steps that record nothing run the whole sequence through torch's fused kernel on the
        # same parameters (about 3x faster on CPU than the loop); recording steps unroll, because
        # the per-time-step gradient needs every h_t. Not for cells the kernels do not have:
        # layer norm inside the cell, or an rnn activation other than tanh / relu.
        self.seq_kernel = None
        if cfg.norm == "none":
            self.seq_kernel = {"lstm": "lstm", "gru": "gru"}.get(cfg.model) or \
                {"tanh": "rnn_tanh", "relu": "rnn_relu"}.get(cfg.activation if cfg.model == "rnn" else "")
        self._init()
        self._forget_bias(task)
        self.captured: dict = {}
        self.aux_out: list = []

    def _init(self):
        cfg, W = self.cfg, self.cfg.width
        if cfg.init == "default":
            return
        for l in range(cfg.depth):
            if cfg.init == "identity":
                # IRNN (Le et al. 2015): W_hh = I, small input weights N(0, 0.001^2), zero bias
                with torch.no_grad():
                    self.w_hh[l].weight.copy_(torch.eye(W))
                    self.w_ih[l].weight.normal_(0.0, 0.001)
            else:
                for w in (self.w_ih[l].weight, self.w_hh[l].weight):
                    for g in w.split(W, 0):  # per gate, so fan_out is the gate's width
                        init_weight(g, cfg.init, cfg.weight_var)
            nn.init.zeros_(self.w_ih[l].bias)
            if self.w_hh[l].bias is not None:
                nn.init.zeros_(self.w_hh[l].bias)
        init_weight(self.head.weight, "lecun" if cfg.init == "identity" else cfg.init, cfg.weight_var)
        nn.init.zeros_(self.head.bias)

    def _forget_bias(self, task: Task):
        """LSTM gates are (i, f, g, o) in w_ih's bias (w_hh has none). A number adds to the forget
        gate's bias; chrono (Tallec & Ollivier 2018): b_f ~ log U[1, T_max - 1], b_i = -b_f, with
        T_max the task's sequence length."""
        fb, W = self.cfg.forget_bias, self.cfg.width
        if self.kind != "lstm" or fb == 0.0:
            return
        t_max = task.x["train"].shape[1]
        with torch.no_grad():
            for l in range(self.cfg.depth):
                b = self.w_ih[l].bias
                if fb == "chrono":
                    bf = torch.log(1 + torch.rand(W) * max(t_max - 2, 1e-6))   # U[1, T_max - 1]
                    b[W:2 * W] = bf
                    b[:W] = -bf
                else:
                    b[W:2 * W] += fb

    def weights(self):
        out = []
        for l in range(self.cfg.depth):
            out += [(f"w_ih.{l}.weight", self.w_ih[l].weight), (f"w_hh.{l}.weight", self.w_hh[l].weight)]
        return out + [("head.weight", self.head.weight)]

    def cell(self, l, xp, h, c):
        W = self.cfg.width
        if self.kind == "rnn":
            h = self.act(self.lns[l](xp + self.w_hh[l](h)))
            return h, c
        if self.kind == "lstm":
            i, f, g, o = self.lns[l](xp + self.w_hh[l](h)).split(W, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        hh = self.w_hh[l](h)
        if not isinstance(self.lns[l], nn.Identity):
            xp, hh = self.lns[l](xp), self.lns[l](hh)
        xr, xz, xn = xp.split(W, -1)
        hr, hz, hn = hh.split(W, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, c

    def forward_fused(self, x):
        """The whole sequence, all layers, in one call of torch's fused kernel (cuDNN on a GPU),
        with this module's own parameters: the same function as the unrolled loop."""
        B, W = x.shape[0], self.cfg.width
        flat = []
        for l in range(self.cfg.depth):
            hh_bias = self.w_hh[l].bias if self.w_hh[l].bias is not None else self.zero_bias
            flat += [self.w_ih[l].weight, self.w_hh[l].weight, self.w_ih[l].bias, hh_bias]
        h0 = x.new_zeros(self.cfg.depth, B, W)
        args = (flat, True, self.cfg.depth, 0.0, self.training, False, True)
        if self.seq_kernel == "lstm":
            seq = torch._VF.lstm(x, (h0, h0), *args)[0]
        else:
            seq = getattr(torch._VF, self.seq_kernel)(x, h0, *args)[0]
        return self.head(seq if self.per_step else seq[:, -1])

    def forward(self, x, capture: bool = False):
        if not capture and self.seq_kernel is not None:
            return self.forward_fused(x)
        B, T, _ = x.shape
        W = self.cfg.width
        seq = x
        hs_t, acts = [], []
        for l in range(self.cfg.depth):
            h = x.new_zeros(B, W)
            c = x.new_zeros(B, W)
            outs = []
            ih, hh = self.w_ih[l], self.w_hh[l]
            if not self.fused:
                xp = ih(seq)  # (B, T, G*W) for all steps at once
            for t in range(T):
                if self.fused and self.kind == "lstm":
                    h, c = torch.lstm_cell(seq[:, t], (h, c), ih.weight, hh.weight, ih.bias, self.zero_bias)
                elif self.fused:
                    h = torch.gru_cell(seq[:, t], h, ih.weight, hh.weight, ih.bias, hh.bias)
                else:
                    h, c = self.cell(l, xp[:, t], h, c)
                if capture:
                    h.retain_grad()
                outs.append(h)
            if capture:
                hs_t.append(outs)
            seq = torch.stack(outs, 1)
            if capture:
                acts.append(seq.detach())
        out = self.head(seq if self.per_step else seq[:, -1])
        if capture:
            out.retain_grad()
            self.captured = {"h_t": hs_t, "act": acts, "out": out}
        return out


class Transformer(nn.Module):
    """A small encoder for the sequence tasks: input projection plus a learned position embedding,
    `depth` blocks of multi-head self-attention and a feed-forward sublayer (4 x width, the
    configured activation), and a linear head on every position (per-step tasks) or the last.

    norm_position pre (Xiong et al. 2020): h = h + F(LN(h)), with a final LN before the head;
    post (Vaswani et al. 2017): h = LN(h + F(h)). residual_branch rezero (Bachlechner et al. 2020):
    h = h + alpha F(h), alpha = 0 at init, no layer norm. Instrumented like the other models: the
    weights are each block's attention input and output projections and its two feed-forward
    layers, then the head; capture keeps every block's output (B, T, W) for ||dL/dh_l|| per block
    and per position, and the feed-forward activations for the dead / saturated fractions."""

    UNITS_LAST = True   # activations are (batch, position, unit)

    def __init__(self, cfg: RunConfig, task: Task):
        super().__init__()
        self.cfg = cfg
        self.per_step = task.loss == "xent_seq"
        W, D = cfg.width, cfg.depth
        T, feat = task.sample_shape
        self.inp = nn.Linear(feat, W)
        self.pos = nn.Parameter(torch.randn(T, W) * 0.02)
        self.attn = nn.ModuleList(nn.MultiheadAttention(W, cfg.heads, batch_first=True) for _ in range(D))
        self.ff1 = nn.ModuleList(nn.Linear(W, 4 * W) for _ in range(D))
        self.ff2 = nn.ModuleList(nn.Linear(4 * W, W) for _ in range(D))
        self.acts = nn.ModuleList(make_activation(cfg, 4 * W) for _ in range(D))
        ln = cfg.norm == "layer"
        self.ln1 = nn.ModuleList(nn.LayerNorm(W) if ln else nn.Identity() for _ in range(D))
        self.ln2 = nn.ModuleList(nn.LayerNorm(W) if ln else nn.Identity() for _ in range(D))
        self.ln_out = nn.LayerNorm(W) if ln and cfg.norm_position == "pre" else nn.Identity()
        rezero = cfg.residual_branch == "rezero"
        self.alphas = nn.ParameterList(nn.Parameter(torch.zeros(())) for _ in range(D) if rezero)
        self.head = nn.Linear(W, task.n_out)
        if cfg.init != "default":
            for _, w in self.weights():
                init_weight(w, cfg.init, cfg.weight_var)
            for m in [*self.ff1, *self.ff2, self.inp, self.head]:
                nn.init.zeros_(m.bias)
        self.captured: dict = {}
        self.aux_out: list = []

    def weights(self):
        out = []
        for l in range(self.cfg.depth):
            out += [(f"attn.{l}.in_proj_weight", self.attn[l].in_proj_weight),
                    (f"attn.{l}.out_proj.weight", self.attn[l].out_proj.weight),
                    (f"ff1.{l}.weight", self.ff1[l].weight), (f"ff2.{l}.weight", self.ff2[l].weight)]
        return out + [("head.weight", self.head.weight)]

    def _sublayers(self, l, acts, capture):
        def attend(z):
            return self.attn[l](z, z, z, need_weights=False)[0]

        def feed(z):
            a = self.acts[l](self.ff1[l](z))
            if capture:
                acts.append(a.detach())
            return self.ff2[l](a)
        return attend, feed

    def forward(self, x, capture: bool = False):
        h = self.inp(x) + self.pos[:x.shape[1]]
        hs, acts = [], []
        post = self.cfg.norm_position == "post"
        for l in range(self.cfg.depth):
            for f, ln in zip(self._sublayers(l, acts, capture), (self.ln1[l], self.ln2[l])):
                if self.alphas:
                    h = h + self.alphas[l] * f(h)
                elif post:
                    h = ln(h + f(h))
                else:
                    h = h + f(ln(h))
            if capture:
                h.retain_grad()
                hs.append(h)
        z = self.ln_out(h)
        out = self.head(z if self.per_step else z[:, -1])
        if capture:
            out.retain_grad()
            self.captured = {"h": hs + [out], "h_seq": hs, "act": acts}
        return out


@torch.no_grad()
def lsuv(net: nn.Module, x: torch.Tensor, tol: float = 0.01, max_iter: int = 10) -> None:
    """Layer-sequential unit variance (Mishkin & Matas 2016), after an orthogonal init: for each
    weight layer in turn, from the input up, divide its weight by the standard deviation of its
    output on the batch x until that variance is within tol of 1. The output is the linear /
    conv layer's own (before norm and activation), as in the authors' implementation. Batch norm
    statistics are not touched (the model is put in eval mode for the passes)."""
    mode = net.training
    net.eval()
    for _, w in net.weights():
        module = next(m for m in net.modules() if getattr(m, "weight", None) is w)
        seen = {}
        hook = module.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
        for _ in range(max_iter):
            net(x)
            var = float(seen["out"].var())
            if abs(var - 1.0) < tol or var == 0:
                break
            w.div_(math.sqrt(var))
        hook.remove()
    net.train(mode)


def build_model(cfg: RunConfig, task: Task) -> nn.Module:
    torch.manual_seed(cfg.seed)
    if cfg.recurrent:
        return Recurrent(cfg, task)
    if cfg.model == "transformer":
        return Transformer(cfg, task)
    return FeedForward(cfg, task)


def task_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean loss over the batch (and time steps for per-step tasks)."""
    if loss == "mse":
        return F.mse_loss(out.squeeze(-1), y)
    if loss == "xent_seq":
        return F.cross_entropy(out.flatten(0, 1), y.flatten())
    return F.cross_entropy(out, y)
