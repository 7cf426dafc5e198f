"""Figure 8: training loss vs step per condition (deepest MLP), mean and CI band."""
import matplotlib.pyplot as plt
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import MLP, SHOWN, curves_of, deepest_mlp


def make(frames):
    sel, d = deepest_mlp(frames)
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    if d is None:
        style.empty(ax)
        return fig
    c = curves_of(frames, MLP, "metric", sel["run_id"])
    c = c[c["name"] == "train/loss"]
    order = [v for v in SHOWN if v in set(c["variant"])]
    sns.lineplot(c, x="step", y="value", hue="variant", hue_order=order, style="variant", style_order=order, errorbar=("ci", 95), ax=ax, linewidth=1)
    ax.set_ylabel("training loss")
    ax.set_title(f"MLP depth {d}")
    sns.move_legend(ax, "center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig
