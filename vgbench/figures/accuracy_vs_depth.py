"""Figure 4: test score vs depth, one panel per study the profile names (report.figures.
accuracy_vs_depth.panels), with the stats stage's 95 % CIs (the tables' intervals). A panel's
`where: {axis: value}` fixes the study's other axes (e.g. the learning rate), so one line is one
condition."""
import matplotlib.pyplot as plt

from vgbench.figures import style
from vgbench.figures._data import ci_lines, conditions_of, matching, spec


def make(frames):
    panels = spec(frames, "accuracy_vs_depth").get("panels") or [{}]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 2.6), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        c = conditions_of(frames, p.get("study")) if p.get("study") else None
        if c is not None and p.get("where"):
            c = matching(c, p["where"])
        if c is None or c.empty or "depth" not in c:
            style.empty(ax)
            continue
        ci_lines(ax, c, "depth", p.get("variants") or sorted(c["variant"].unique()))
        ax.axhline(float(c["baseline_value"].iloc[0]), color="0.5", ls=":", lw=0.8)
        ax.set_title(p.get("title", p["study"]))
        ax.set_xlabel("depth")
        ax.set_xticks(sorted(c["depth"].unique()))  # the depths trained, not 2.5-spaced floats
        ax.set_ylabel("test accuracy" if str(c["metric"].iloc[0]).endswith("acc") else "test loss")
    fig.tight_layout()
    return fig
