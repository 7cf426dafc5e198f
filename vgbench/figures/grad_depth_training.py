"""Figure 2: per-layer gradient norm at early / mid / final steps, deepest MLP."""
import matplotlib.pyplot as plt
import numpy as np

from vgbench.figures import style
from vgbench.figures._data import curves_of, deepest_of, spec, variant_lines


def make(frames):
    sp = spec(frames, "grad_depth_training")
    sel, d = deepest_of(frames, sp)
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.4), sharey=True)
    if d is None:
        for ax in axes:
            style.empty(ax)
        return fig
    c = curves_of(frames, sp["study"], "signal", sel["run_id"])
    c = c[c["name"] != "logits"]
    steps = np.array(sorted(c["step"].unique()))
    picks = [steps[min(1, len(steps) - 1)], steps[len(steps) // 2], steps[-1]] if len(steps) else []
    for ax, s in zip(axes, picks):
        variant_lines(ax, c[c["step"] == s], "index", "value", sp["variants"], legend=ax is axes[-1], log=True)
        ax.set_title(f"step {s} (depth {d})")
        ax.set_xlabel("layer l")
        ax.set_ylabel(r"$\|\partial L/\partial h_l\|$")
    fig.tight_layout()
    return fig
