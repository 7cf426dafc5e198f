"""Figure 3: first/last-layer weight-gradient ratio over training steps, deepest MLP."""
import matplotlib.pyplot as plt

from vgbench.figures import style
from vgbench.figures._data import curves_of, deepest_of, spec, variant_lines


def make(frames):
    sp = spec(frames, "grad_ratio_curves")
    sel, d = deepest_of(frames, sp)
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    if d is None:
        style.empty(ax)
        return fig
    w = curves_of(frames, sp["study"], "weight_grad", sel["run_id"])
    first = w[w["index"] == 0].set_index(["run_id", "step"])["value"]
    last = w[w["index"] == w.groupby("run_id")["index"].transform("max")].set_index(["run_id", "step"])["value"]
    r = (first / last).rename("ratio").reset_index().merge(sel[["run_id", "variant"]], on="run_id")
    r["step"] = r["step"].clip(lower=0.5)   # step 0 on a log axis
    variant_lines(ax, r, "step", "ratio", sp["variants"], log=True)
    ax.set_xscale("log")
    ax.axhline(1, color="0.5", lw=0.6, ls=":")
    ax.set_xlabel("step (0 drawn at 0.5)")
    ax.set_ylabel(r"$\|\nabla W_1\| / \|\nabla W_L\|$")
    ax.set_title(f"{sp['study']}, depth {d}")
    fig.tight_layout()
    return fig
