"""Figure 12: divergence rate and largest gradient norm, +- clipping and weight decay; one row per
study the profile names (report.figures.exploding: {study: ...} or {studies: [...]})."""
import matplotlib.pyplot as plt
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import spec


def make(frames):
    sp = spec(frames, "exploding")
    studies = list(sp.get("studies") or [sp.get("study")])
    cond = frames["conditions"]
    runs = frames["runs"]
    fig, grid = plt.subplots(len(studies), 2, figsize=(7.2, 2.5 * len(studies)), squeeze=False)
    for study, axes in zip(studies, grid):
        c = cond[cond["study"] == study] if len(cond) else cond
        if c.empty:
            for ax in axes:
                style.empty(ax)
            continue
        order = sorted(c["variant"])
        sns.barplot(c, x="variant", y="divergence_rate", order=order, ax=axes[0], color="C3", errorbar=None)
        axes[0].set_ylim(0, 1.12)
        # "k/n" on every bar, so a variant with no divergence reads as 0/n, not as missing
        counts = c.groupby("variant")[["n_diverged", "n"]].sum()
        for i, v in enumerate(order):
            axes[0].text(i, min(float(c.loc[c["variant"] == v, "divergence_rate"].mean()), 1.0) + 0.02,
                         f"{int(counts.loc[v, 'n_diverged'])}/{int(counts.loc[v, 'n'])}", ha="center", va="bottom",
                         fontsize=6)
        axes[0].set_ylabel("fraction of seeds diverged")
        axes[0].set_title(str(study), loc="left", fontsize=8)
        r = runs[(runs["study"] == study) & (runs["stage"] == "final")]
        sns.stripplot(r, x="variant", y="max_grad_norm", order=order, ax=axes[1], size=3, jitter=False)
        axes[1].set_yscale("log")
        axes[1].set_ylabel("largest gradient norm (before clipping)")
        for ax in axes:
            ax.tick_params(axis="x", rotation=35, labelsize=6)
            ax.set_xlabel("")
    fig.tight_layout()
    return fig
