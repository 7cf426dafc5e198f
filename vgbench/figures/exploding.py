"""Figure 12: divergence rate, largest gradient norm and the weights' growth over training (L2 norm
of all parameters, geometric mean over seeds, as every line on a log axis; a diverged run's line
ends where it diverged), +- clipping and
weight decay; one row per study the profile names (report.figures.exploding: {study: ...} or
{studies: [...]})."""
import matplotlib.pyplot as plt
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import curves_of, log_lines, spec


def make(frames):
    sp = spec(frames, "exploding")
    studies = list(sp.get("studies") or [sp.get("study")])
    cond = frames["conditions"]
    runs = frames["runs"]
    fig, grid = plt.subplots(len(studies), 3, figsize=(7.2, 2.5 * len(studies)), squeeze=False,
                            gridspec_kw={"width_ratios": [1, 1, 1.15]})
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
        for ax in axes[:2]:
            ax.tick_params(axis="x", labelsize=6)
            plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
            ax.set_xlabel("")
        w = curves_of(frames, study, "metric")
        w = w[w["name"] == "train/weight_norm"] if len(w) else w
        if w.empty:   # runs recorded before the weight norm was
            style.empty(axes[2])
            continue
        if not log_lines(axes[2], w, "step", "value", "variant", hue_order=order, style="variant",
                         style_order=order, palette="tab10"):
            continue
        axes[2].set_xscale("symlog", linthresh=10)   # divergence comes within a few steps
        axes[2].set_xlim(left=0)
        axes[2].set_ylabel("weight norm $\\|\\theta\\|_2$")
        axes[2].legend(fontsize=5, title=None)
    fig.tight_layout()
    return fig
