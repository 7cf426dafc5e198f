"""Figure 9: saturated (sigmoid) / dead (ReLU) fraction per layer over training, deepest MLP."""
import matplotlib.pyplot as plt
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import MLP, curves_of, deepest_mlp


def make(frames):
    runs, d = deepest_mlp(frames, variants=None)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.5))
    if d is None:
        for ax in axes:
            style.empty(ax)
        return fig
    for ax, (kind, variant) in zip(axes, (("saturation", "baseline"), ("dead", "relu"))):
        sel = runs[runs["variant"] == variant]
        c = curves_of(frames, MLP, kind, sel["run_id"])
        if c.empty:
            style.empty(ax, f"no {kind} data ({variant})")
            continue
        steps = sorted(c["step"].unique())
        keep = [steps[0], steps[len(steps) // 3], steps[2 * len(steps) // 3], steps[-1]]
        c = c[c["step"].isin(keep)]
        sns.lineplot(c, x="index", y="value", hue="step", palette="viridis", errorbar=("ci", 95), ax=ax, linewidth=1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("layer l")
        ax.set_ylabel(f"{kind} fraction")
        ax.set_title(f"{variant} (depth {d})")
    fig.tight_layout()
    return fig
