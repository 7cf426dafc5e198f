"""Figure 9: saturated (sigmoid) / dead (ReLU) fraction per layer over training, deepest MLP."""
import matplotlib.pyplot as plt
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import CI, curves_of, deepest_of, spec


def make(frames):
    sp = spec(frames, "saturation")
    runs, d = deepest_of(frames, sp, all_variants=True)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.5))
    if d is None:
        for ax in axes:
            style.empty(ax)
        return fig
    for ax, panel in zip(axes, sp.get("panels") or []):
        kind, variant = panel["kind"], panel["variant"]
        sel = runs[runs["variant"] == variant]
        c = curves_of(frames, sp["study"], kind, sel["run_id"])
        if c.empty:
            style.empty(ax, f"no {kind} data ({variant})")
            continue
        steps = sorted(c["step"].unique())
        keep = [steps[0], steps[len(steps) // 3], steps[2 * len(steps) // 3], steps[-1]]
        c = c[c["step"].isin(keep)]
        sns.lineplot(c, x="index", y="value", hue="step", palette="viridis", ax=ax, linewidth=1, **CI)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("layer l")
        ax.set_ylabel(f"{kind} fraction")
        ax.set_title(f"{variant} (depth {d})")
    fig.tight_layout()
    return fig
