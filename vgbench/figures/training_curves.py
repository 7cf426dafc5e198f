"""Figure 8: training loss vs step per condition (deepest MLP), mean and CI band."""
import matplotlib.pyplot as plt

from vgbench.figures import style
from vgbench.figures._data import curves_of, deepest_of, spec, variant_lines


def make(frames):
    sp = spec(frames, "training_curves")
    sel, d = deepest_of(frames, sp)
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    if d is None:
        style.empty(ax)
        return fig
    c = curves_of(frames, sp["study"], "metric", sel["run_id"])
    c = c[c["name"] == "train/loss"]
    variant_lines(ax, c, "step", "value", sp["variants"])
    ax.set_ylabel("training loss")
    ax.set_title(f"{sp['study']}, depth {d}")
    fig.tight_layout()
    return fig
