"""Figure 4: test score vs depth: MLP mitigations; plain CNN vs ResNet (+- batch norm)."""
import matplotlib.pyplot as plt
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import MLP, SHOWN, final_runs
from vgbench.scores import outcome


def make(frames):
    runs = final_runs(frames)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 2.6))
    for ax, study, order in ((axes[0], MLP, SHOWN), (axes[1], "cnn_resnet", ["cnn", "cnn_bn", "resnet", "resnet_bn"])):
        s = runs[runs["study"] == study].copy() if len(runs) else runs
        if s.empty or "depth" not in s:
            style.empty(ax)
            continue
        s["test score"] = outcome(s, "test")["score"]
        hue = [v for v in order if v in set(s["variant"])]
        sns.lineplot(s[s["variant"].isin(hue)], x="depth", y="test score", hue="variant", hue_order=hue, style="variant",
                     errorbar=("ci", 95), marker="o", ax=ax, linewidth=1)
        ax.axhline(float(s["baseline_value"].iloc[0]), color="0.5", ls=":", lw=0.8)
        ax.set_title("MLP on mnist1d" if study == MLP else "CNN vs ResNet on mnist1d")
        ax.set_ylabel("test accuracy")
        # outside the axes: inside, it hid the lines stuck at chance (baseline and others overlap there)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), fontsize=6, title=None)
    fig.tight_layout()
    return fig
