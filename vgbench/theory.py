"""Mean-field signal propagation at initialisation (Poole et al. 2016; Schoenholz et al. 2017).

For a fully connected net with weights of variance sigma_w^2 / fan_in and biases of
variance sigma_b^2, the pre-activation variance obeys
    q_{l+1} = sigma_w^2 E[phi(z)^2] + sigma_b^2,   z ~ N(0, q_l),
and the expected squared norm of the back-propagated error shrinks (or grows) per layer by
    chi(q_l) = sigma_w^2 E[phi'(z)^2],             z ~ N(0, q_l).
Expectations are computed on a dense grid (Gauss-Hermite quadrature misses the narrow
derivative of saturated tanh/sigmoid at large q and converges slowly at kinks).
`predict_signal` turns this into a predicted log10 ||dL/dh_l|| profile over the hidden
layers, anchored at the top hidden layer (index depth-1 = 0), which is what the
`signal` instrument measures.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import erf, expit

# Gauss-Hermite quadrature is exact for smooth integrands but not for these: its nodes at
# sqrt(q) x_i step over the O(1)-wide region where tanh' or sigmoid' is non-zero when q is
# large (N(0,1) weights: q ~ width), and it converges slowly at the kinks of relu and
# softsign (3 % off for softsign' at q = 1). A dense trapezoid grid over +-12 sqrt(q) is
# accurate for all of them. An even number of points: none at z = 0, where the ReLU
# family's derivative jumps, so E[1(z > 0)] is exactly 1/2 by symmetry.
_GRID = np.linspace(-12.0, 12.0, 60_000)   # in units of sqrt(q)
_GRID_W = np.exp(-_GRID ** 2 / 2) / math.sqrt(2 * math.pi) * (_GRID[1] - _GRID[0])

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
PRELU_INIT = 0.25      # torch.nn.PReLU's initial slope
LEAKY_SLOPE = 0.01     # torch.nn.LeakyReLU's default


def phi(name: str, z: np.ndarray, slope: float = LEAKY_SLOPE) -> np.ndarray:
    if name == "sigmoid":
        return expit(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name in ("leaky_relu", "prelu"):
        a = slope if name == "leaky_relu" else PRELU_INIT
        return np.where(z > 0, z, a * z)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "selu":
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))
    if name == "gelu":
        return z * 0.5 * (1 + erf(z / math.sqrt(2)))
    if name == "softsign":
        return z / (1 + np.abs(z))
    raise ValueError(f"unknown activation {name!r}")


def dphi(name: str, z: np.ndarray, slope: float = LEAKY_SLOPE, c: float = 0.0) -> np.ndarray:
    """Derivative used by backprop; for sigmoid with sigmoid_grad_c, sigma' + c."""
    if name == "sigmoid":
        s = expit(z)
        return s * (1 - s) + c
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "relu":
        return (z > 0).astype(float)
    if name in ("leaky_relu", "prelu"):
        a = slope if name == "leaky_relu" else PRELU_INIT
        return np.where(z > 0, 1.0, a)
    if name == "elu":
        return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))
    if name == "selu":
        return SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0)))
    if name == "gelu":
        return 0.5 * (1 + erf(z / math.sqrt(2))) + z * np.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi)
    if name == "softsign":
        return 1 / (1 + np.abs(z)) ** 2
    raise ValueError(f"unknown activation {name!r}")


def expect(f, q: float) -> float:
    """E[f(z)] for z ~ N(0, q), on a dense grid (see _GRID)."""
    return float(np.sum(_GRID_W * f(math.sqrt(max(q, 0.0)) * _GRID)))


def weight_variance(init: str, fan_in: int, fan_out: int) -> tuple[float, float]:
    """(sigma_w^2, sigma_b^2) of an init scheme, weights' variance = sigma_w^2 / fan_in."""
    if init == "default":   # U[+-1/sqrt(fan_in)] for weights and biases: variance 1/(3 fan_in)
        return 1 / 3, 1 / (3 * fan_in)
    if init == "normal":
        return float(fan_in), 0.0
    if init == "lecun":
        return 1.0, 0.0
    if init == "xavier":
        return 2 * fan_in / (fan_in + fan_out), 0.0
    if init == "he":
        return 2.0, 0.0
    if init == "orthogonal":  # norm-preserving: acts like sigma_w^2 = 1 on squared norms
        return 1.0, 0.0
    raise ValueError(f"no mean-field variance for init {init!r}")


@functools.lru_cache(maxsize=None)
def second_moment(activation: str, q: float) -> float:
    """E[phi(z)^2], z ~ N(0, q). Cached: iterated maps revisit the same q exactly (a fixed point
    reached in float64, ReLU's q that does not change), a third of predict_examples' calls."""
    return expect(lambda z: phi(activation, z) ** 2, q)


@functools.lru_cache(maxsize=None)
def derivative_moment(activation: str, q: float, c: float = 0.0) -> float:
    """E[phi'(z)^2] (phi' + c for sigma'+c), z ~ N(0, q); cached like second_moment."""
    return expect(lambda z: dphi(activation, z, c=c) ** 2, q)


def chi(activation: str, sw2: float, q: float, c: float = 0.0) -> float:
    return sw2 * derivative_moment(activation, q, c)


def predict(activation: str, init: str, depth: int, width: int, in_dim: int, input_q: float = 1.0,
            c: float = 0.0) -> dict:
    """Predicted pre-activation variances q_l and per-layer chi_l for an MLP at init.

    input_q: mean squared input feature (mnist1d is standardised: ~1).
    Returns arrays of length depth: q (pre-activation variance of hidden layer l), chi
    (gradient-norm^2 factor from layer l back to layer l-1), and log10_signal: predicted
    log10 ||dL/dh_l|| relative to the top hidden layer (l = depth-1 -> 0).
    """
    qs, chis = [], []
    sw2, sb2 = weight_variance(init, in_dim, width)
    q = sw2 * input_q + sb2
    for l in range(depth):
        if l > 0:
            sw2, sb2 = weight_variance(init, width, width)
            q = sw2 * second_moment(activation, qs[-1]) + sb2
        qs.append(q)
        chis.append(chi(activation, sw2, q, c))
    qs, chis = np.array(qs), np.array(chis)
    # dL/dh_{l-1} = W_l^T (phi'(z_l) * dL/dh_l): going down from layer l to l-1 multiplies
    # the squared norm by chi_l (computed with layer l's pre-activations).
    log10 = np.zeros(depth)
    for l in range(depth - 2, -1, -1):
        log10[l] = log10[l + 1] + 0.5 * math.log10(max(chis[l + 1], 1e-300))
    return {"q": qs, "chi": chis, "log10_signal": log10}


def predict_examples(activation: str, init: str, depth: int, width: int, in_dim: int, input_qs,
                     c: float = 0.0, points: int = 40) -> np.ndarray:
    """predict()'s log10 ||dL/dh_l|| profile for a batch whose examples have different input norms:
    each example's own mean squared input feature q_i gives its own chi_l, the batch's squared error
    norm at layer l is the sum of the examples' (taking their top-layer errors as equal), so the
    profile is 0.5 log10 mean_i prod chi. The q_i are summarised by `points` quantiles."""
    qs = np.quantile(np.asarray(input_qs, dtype=float), (np.arange(points) + 0.5) / points)
    sq = np.array([2 * predict(activation, init, depth, width, in_dim, float(q), c)["log10_signal"] for q in qs])
    top = sq.max(0)
    return 0.5 * (top + np.log10(np.mean(10 ** (sq - top), axis=0)))


# --- the phase diagram (Schoenholz et al. 2017): fixed points and depth scales ----------------

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(101)   # probabilists' Hermite: E over N(0, 1)
_GH_W = _GH_W / _GH_W.sum()


def q_star(activation: str, sw2: float, sb2: float, q0: float = 1.0, tol: float = 1e-10, max_iter: int = 200) -> float:
    """Fixed point of the variance map q -> sw2 E[phi(z)^2] + sb2, z ~ N(0, q): iteration, and where
    that is slow (the map's slope near 1, e.g. tanh near sw2 = 1 at sb2 = 0) the root of map(q) - q."""
    from scipy.optimize import brentq
    vmap = lambda q: sw2 * second_moment(activation, q) + sb2
    q = q0
    for _ in range(max_iter):
        new = vmap(q)
        if abs(new - q) < tol * max(1.0, q):
            return float(new)
        q = new
    h = lambda q: vmap(q) - q
    if h(q) > 0:
        lo, hi = q, 2 * q
        while h(hi) > 0:
            lo, hi = hi, 2 * hi
    else:
        lo, hi = 1e-12, q
        if h(lo) <= 0:          # no positive fixed point: q* = 0
            return 0.0
    return float(brentq(h, lo, hi, xtol=tol * max(1.0, q), rtol=1e-14))


def chi_1(activation: str, sw2: float, sb2: float) -> float:
    """chi_1 = sw2 E[phi'(z)^2] at the fixed point q*: < 1 ordered, > 1 chaotic, = 1 critical."""
    return chi(activation, sw2, q_star(activation, sw2, sb2))


def _corr_map(activation: str, sw2: float, sb2: float, q: float, c: float) -> tuple[float, float]:
    """(c_next, chi_c) of the correlation map at correlation c between two inputs (both at q*)."""
    z1 = _GH_X[:, None]
    z2 = _GH_X[None, :]
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2)
    w = _GH_W[:, None] * _GH_W[None, :]
    c_next = (sw2 * np.sum(w * phi(activation, u1) * phi(activation, u2)) + sb2) / q
    chi_c = sw2 * np.sum(w * dphi(activation, u1) * dphi(activation, u2))
    return float(c_next), float(chi_c)


def depth_scales(activation: str, sw2: float, sb2: float) -> dict:
    """q*, chi_1, the fixed point c* of the correlation map, and the depth scales
    xi_c = -1 / ln chi_c(c*) (how deep correlations between inputs propagate; Schoenholz et al.
    predict nets train up to ~6 xi_c) and xi_grad = -1 / ln chi_1 (|1/ln| for chi_1 > 1)."""
    q = q_star(activation, sw2, sb2)
    x1 = chi(activation, sw2, q)
    if x1 <= 1.0:
        # ordered phase: c* = 1 is the stable fixed point, where chi_c(1) = chi_1 exactly
        c, chi_c = 1.0, x1
    else:
        # chaotic phase: the stable fixed point c* < 1 is the root of c_next(c) - c (c_next(0) >= 0
        # for sb2 >= 0; c_next(c) < c just below 1, where the map's slope is chi_1 > 1)
        from scipy.optimize import brentq
        g = lambda c: _corr_map(activation, sw2, sb2, q, c)[0] - c
        hi = 1.0 - 1e-9
        c = 0.0 if g(0.0) <= 0 else float(brentq(g, 0.0, hi, xtol=1e-13)) if g(hi) < 0 else 1.0
        chi_c = _corr_map(activation, sw2, sb2, q, c)[1]
    return {"q_star": q, "chi_1": x1, "c_star": c, "chi_c": chi_c,
            "xi_c": math.inf if chi_c == 1 else -1.0 / math.log(chi_c) if chi_c < 1 else math.inf,
            "xi_grad": math.inf if x1 == 1 else 1.0 / abs(math.log(x1))}


def critical_weight_var(activation: str, sb2: float, lo: float = 0.5, hi: float = 4.0) -> float:
    """The sigma_w^2 where chi_1 = 1 (order-to-chaos transition) at bias variance sb2 (bisection)."""
    from scipy.optimize import brentq
    return float(brentq(lambda sw2: chi_1(activation, sw2, sb2) - 1.0, lo, hi, xtol=1e-6))


def phase_boundary(o, study: str, threshold: float = 0.05, factor: float = 6.0):
    """How well the measured trainable region of a sigma_w^2 x depth grid follows the mean-field one.

    o: final runs with `score` (stats.outcomes), `baseline_metric`, `baseline_value`, `activation`,
    `weight_var`, `bias_var`, `depth`. A grid cell (sigma_w^2, depth) *trains* when its mean score
    over seeds beats the trivial predictor by `threshold` (as the `trainable` outcome); the theory
    predicts it trains when depth <= factor * xi_c(sigma_w^2) (Schoenholz et al. 2017: factor 6).
    Returns (per sigma_w^2: predicted and measured trainable depth -- the largest depth that trains,
    0 if none --, summary: cells, cell agreement = fraction of cells where measurement and
    prediction agree, and the Spearman rank correlation of measured vs predicted trainable depth
    over sigma_w^2 with its p-value)."""
    import pandas as pd
    from scipy.stats import spearmanr
    d = o[o["study"] == study]
    if d.empty or not {"weight_var", "depth"} <= set(d):
        return pd.DataFrame(), {}
    act, sb2 = str(d["activation"].iloc[0]), float(d["bias_var"].iloc[0])
    from vgbench.scores import trivial_score
    cells = (d.assign(margin=d["score"] - trivial_score(d))
             .groupby(["weight_var", "depth"], as_index=False)["margin"].mean())
    xi = {sw: depth_scales(act, float(sw), sb2)["xi_c"] for sw in cells["weight_var"].unique()}
    cells["trains"] = cells["margin"] >= threshold
    cells["predicted"] = cells["depth"] <= cells["weight_var"].map(lambda sw: factor * xi[sw])
    rows = []
    for sw, g in cells.groupby("weight_var"):
        ok = g.loc[g["trains"], "depth"]
        rows.append({"weight_var": float(sw), "xi_c": xi[sw], "predicted_depth": factor * xi[sw],
                     "measured_depth": float(ok.max()) if len(ok) else 0.0})
    per = pd.DataFrame(rows)
    summary = {"cells": len(cells), "cell_agreement": float((cells["trains"] == cells["predicted"]).mean()),
               "spearman_rho": math.nan, "spearman_p": math.nan}
    if len(per) > 2 and per["measured_depth"].nunique() > 1:
        rho, p = spearmanr(per["measured_depth"], per["predicted_depth"].clip(upper=1e12))
        summary.update(spearman_rho=float(rho), spearman_p=float(p))
    return per, summary


def table(runs, curves, study: str | None, input_qs=None):
    """Predicted vs measured per-layer signal for every activation x init of `study`.

    Measured: mean over seeds of log10 ||dL/dh_l|| at step 0 (NaN at a layer where a run's norm
    underflowed float32: stats.log_rows). Predicted: the mean-field
    profile anchored at the measured top hidden layer, for one input norm (mean squared input
    feature 1) and, with input_qs (each example's mean squared input feature), averaged over the
    examples (predict_examples). Also the per-layer decay (slope of log10 signal per layer, least
    squares) of each.
    """
    import pandas as pd

    fin = runs[(runs["study"] == study) & (runs["stage"] == "final")]
    rows = []
    if fin.empty:
        return pd.DataFrame(columns=["activation", "init", "layer", "measured_log10", "predicted_log10",
                                     "predicted", "slope_measured", "slope_predicted", "predicted_examples_log10",
                                     "slope_predicted_examples"])
    c = curves[(curves["study"] == study) & (curves["kind"] == "signal") & (curves["step"] == 0)
               & (curves["name"] != "logits")]
    c = c.astype({"run_id": str}).merge(fin[["run_id", "activation", "init", "depth", "width", "sigmoid_grad_c"]],
                                        on="run_id")
    from vgbench.stats import log_rows
    c = log_rows(c, ["activation", "init"], "index")   # the layers where no run underflowed, as the figure
    in_dim = 40  # mnist1d, the task of the init study
    for (act, init), g in c.groupby(["activation", "init"]):
        depth, width = int(g["depth"].iloc[0]), int(g["width"].iloc[0])
        meas = g.assign(lv=np.log10(g["value"])).groupby("index")["lv"].mean().reindex(range(depth))
        pred = predict(act, init, depth, width, in_dim, c=float(g["sigmoid_grad_c"].iloc[0]))["log10_signal"]
        top = meas.iloc[-1]
        layers = np.arange(depth)
        ok = np.isfinite(meas.to_numpy())
        slope_m = float(np.polyfit(layers[ok], meas.to_numpy()[ok], 1)[0]) if ok.sum() > 1 else math.nan
        slope_p = float(np.polyfit(layers, pred, 1)[0])
        ex = np.full(depth, math.nan) if input_qs is None else predict_examples(
            act, init, depth, width, in_dim, input_qs, c=float(g["sigmoid_grad_c"].iloc[0]))
        slope_e = float(np.polyfit(layers, ex, 1)[0]) if input_qs is not None else math.nan
        for l in layers:
            rows.append({"activation": act, "init": init, "layer": int(l), "measured_log10": float(meas.iloc[l]),
                         "predicted_log10": float(pred[l] + top), "predicted": float(10 ** (pred[l] + top)),
                         "slope_measured": slope_m, "slope_predicted": slope_p,
                         "predicted_examples_log10": float(ex[l] + top), "slope_predicted_examples": slope_e})
    return pd.DataFrame(rows)


def main(args) -> int:
    import pandas as pd

    from vgbench import paths
    from vgbench import grid
    prof = grid.load_profile(args.profile)
    res = paths.require(args.results, "aggregate stage", profile=prof)
    study = prof.report.get("init_study")
    runs = pd.read_parquet(paths.aggregate("runs", res))
    t = table(runs, pd.read_parquet(paths.aggregate("curves", res)), study, input_qs(runs, study))
    out = paths.stats(paths.THEORY, res)
    out.parent.mkdir(parents=True, exist_ok=True)
    from vgbench.provenance import atomic_write
    with atomic_write(out) as tmp:
        t.to_csv(tmp, index=False)
    n = t.groupby(["activation", "init"]).ngroups if len(t) else 0
    print(f"theory: mean-field predictions for {n} activation x init pairs -> {out}")
    return 0


def input_qs(runs, study: str | None):
    """Each training example's mean squared input feature, for the task of the study's final runs
    (None when the study has no runs)."""
    from vgbench.config import load
    from vgbench.data import load_task
    fin = runs[(runs["study"] == study) & (runs["stage"] == "final")] if study else runs.iloc[:0]
    if fin.empty:
        return None
    r = fin.iloc[0]
    args = {k.split(".", 1)[1]: int(v) for k, v in r.items() if k.startswith("task_args.") and v == v}
    x = load_task(load({"task": r["task"], "task_args": args, "batch_size": 1})).x["train"]
    return x.flatten(1).pow(2).mean(1).numpy()
