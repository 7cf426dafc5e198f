"""Figure 5: forest plot of each variant's effect vs its baseline, Holm-significant filled."""
import matplotlib.pyplot as plt
import numpy as np

from vgbench.figures import style


def make(frames):
    c = frames["comparisons"]
    fig, ax = plt.subplots(figsize=(4.6, 0.2 * max(8, len(c) // 2) + 0.8))
    if c.empty:
        style.empty(ax)
        return fig
    c = c[c["quantity"] == "score"].copy()
    c["row"] = c["study"] + ": " + c["variant"] + " vs " + c["baseline"] + " " + c["labels"].str.replace(
        r'[{}"]', "", regex=True)
    c = c.sort_values(["study", "labels", "diff"]).reset_index(drop=True)
    y = np.arange(len(c))
    err = np.vstack([c["diff"] - c["diff_ci_low"], c["diff_ci_high"] - c["diff"]]).clip(min=0)
    ax.errorbar(c["diff"], y, xerr=err, fmt="none", ecolor="0.4", elinewidth=0.8)
    sig = c["significant"].astype(bool).to_numpy()
    ax.scatter(c["diff"][sig], y[sig], color="C0", s=14, zorder=3, label="Holm p < 0.05")
    ax.scatter(c["diff"][~sig], y[~sig], facecolor="white", edgecolor="C0", s=14, zorder=3, label="n.s.")
    ax.axvline(0, color="0.3", lw=0.7)
    ax.set_yticks(y)
    ax.set_yticklabels(c["row"], fontsize=5)
    ax.set_ylim(-1, len(c))
    ax.set_xlabel("effect on test score (accuracy, or -loss)")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig
