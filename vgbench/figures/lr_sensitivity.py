"""Figure 11: validation score vs learning rate per condition, tuning stage."""
import matplotlib.pyplot as plt
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import CI, spec, with_labels
from vgbench.scores import outcome


def make(frames):
    r = frames["runs"]
    t = with_labels(r[r["stage"] == "tune"]) if len(r) else r
    studies = sorted(t["study"].unique()) if len(t) else []
    fig, axes = plt.subplots(1, max(1, len(studies)), figsize=(2.4 * max(1, len(studies)), 2.4), squeeze=False)
    if not studies:
        style.empty(axes[0, 0])
        return fig
    for ax, study in zip(axes.flat, studies):
        s = t[t["study"] == study].copy()
        s["val score"] = outcome(s, "val")["score"]
        if "depth" in s and s["depth"].notna().any():
            s = s[s["depth"] == s["depth"].max()]
        hue = [v for v in spec(frames, "lr_sensitivity").get("variants", []) if v in set(s["variant"])] or sorted(s["variant"].unique())[:8]
        sns.lineplot(s[s["variant"].isin(hue)], x="lr", y="val score", hue="variant", hue_order=hue,
                     marker="o", **CI, ax=ax, legend=True, linewidth=1)
        ax.set_xscale("log")
        ax.set_title(study, fontsize=7)
        ax.legend(fontsize=5)
    fig.tight_layout()
    return fig
