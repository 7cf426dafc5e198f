"""Figure 10: critical-difference diagram (mean ranks, Nemenyi CD) for the MLP mitigations."""
import matplotlib.pyplot as plt

from vgbench.figures import style
from vgbench.figures._data import spec


def make(frames):
    rk, fr = frames["ranks"], frames["friedman"]
    study = spec(frames, "critical_difference").get("study")
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    if rk.empty or fr.empty or study not in set(fr["study"]):
        style.empty(ax)
        return fig
    r = rk[rk["study"] == study].sort_values("mean_rank").reset_index(drop=True)
    f = fr[fr["study"] == study].iloc[0]
    k = len(r)
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(0, 1)
    ax.invert_xaxis()
    ax.axhline(0.85, color="k", lw=0.8)
    ax.set_yticks([])
    ax.set_xticks(range(1, k + 1))
    ax.xaxis.tick_top()
    ax.grid(False)
    for i, row in r.iterrows():
        left = i < k / 2
        y = 0.75 - 0.65 * (i if left else k - 1 - i) / max(1, k / 2)
        ax.plot([row["mean_rank"]] * 2, [0.85, y], color="0.3", lw=0.6)
        ax.text(row["mean_rank"], y, f" {row['variant']} ({row['mean_rank']:.1f}) ", fontsize=6,
                ha="left" if left else "right", va="center")
    ax.plot([1, 1 + f["cd"]], [0.95, 0.95], color="C3", lw=2)
    ax.text(1 + f["cd"] / 2, 0.97, f"CD = {f['cd']:.2f}", ha="center", va="bottom", fontsize=7, color="C3")
    ax.set_title(f"Friedman chi2 = {f['chi2']:.1f}, p = {f['p']:.2g}, {int(f['n_blocks'])} blocks "
                 f"(rank 1 = best)", fontsize=7, pad=18)
    for s in ("left", "right", "bottom"):
        ax.spines[s].set_visible(False)
    fig.tight_layout()
    return fig
