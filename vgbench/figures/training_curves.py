"""Figure 8: training loss vs step per condition (deepest MLP), mean and CI band."""
import matplotlib.pyplot as plt

from vgbench.figures import style
from vgbench.figures._data import MLP, curves_of, deepest_mlp, variant_lines


def make(frames):
    sel, d = deepest_mlp(frames)
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    if d is None:
        style.empty(ax)
        return fig
    c = curves_of(frames, MLP, "metric", sel["run_id"])
    c = c[c["name"] == "train/loss"]
    variant_lines(ax, c, "step", "value")
    ax.set_ylabel("training loss")
    ax.set_title(f"MLP depth {d}")
    fig.tight_layout()
    return fig
