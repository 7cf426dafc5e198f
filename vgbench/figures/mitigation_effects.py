"""Figure 5: forest plot of each variant's effect vs its baseline, Holm-significant filled."""
import json

import matplotlib.pyplot as plt
import numpy as np

from vgbench.figures import style


def make(frames):
    c = frames["comparisons"]
    n = int((c["quantity"] == "score").sum()) if len(c) else 0
    fig, ax = plt.subplots(figsize=(5.2, min(0.13 * max(8, n) + 0.8, 9.0)))
    if c.empty:
        style.empty(ax)
        return fig
    c = c[c["quantity"] == "score"].copy()
    # only the hardest setting of each study (deepest net, longest sequence): all of them
    # made a 145-row plot nobody could read; comparisons.csv and the tables hold the rest
    lab = c["labels"].map(json.loads)
    c["hard"] = lab.map(lambda d: d.get("depth", d.get("task_args.seq_len", 0)))
    c = c[c["hard"] == c.groupby("study")["hard"].transform("max")]
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
    ax.set_xlabel("effect on test score (accuracy, or -loss); hardest setting per study")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig
