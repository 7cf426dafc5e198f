"""Figure 1: log ||dL/dh_l|| vs layer at initialisation, activation x init, with theory."""
import matplotlib.pyplot as plt
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import curves_of, final_runs, init_study, log_lines


def make(frames):
    runs = final_runs(frames)
    init = runs[runs["study"] == init_study(frames)] if len(runs) else runs
    acts = sorted(init["activation"].unique()) if len(init) else []
    ncol = min(3, max(1, len(acts)))
    nrow = max(1, -(-len(acts) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.0 * nrow), sharex=True, squeeze=False)
    if not acts:
        style.empty(axes[0, 0])
        return fig
    c = curves_of(frames, init_study(frames), "signal", init["run_id"])
    c = c[(c["step"] == 0) & (c["name"] != "logits")].merge(init[["run_id", "activation", "init"]], on="run_id")
    th = frames.get("theory")
    inits = sorted(init["init"].unique())
    colors = dict(zip(inits, sns.color_palette(style.PALETTE, len(inits))))
    for ax, act in zip(axes.flat, acts):
        ax.set_title(act)
        if not log_lines(ax, c[c["activation"] == act], "index", "value", "init", hue_order=inits, palette=colors,
                         legend=ax is axes.flat[0]):
            continue
        if th is not None and len(th):
            for ini, t in th[th["activation"] == act].groupby("init"):
                ax.plot(t["layer"], t["predicted"], ls="--", lw=0.8, color=colors.get(ini, "k"))
        ax.set_xlabel("layer l")
        ax.set_ylabel(r"$\|\partial L/\partial h_l\|$")
    for ax in list(axes.flat)[len(acts):]:
        ax.set_visible(False)
    if axes.flat[0].get_legend():
        sns.move_legend(axes.flat[0], "lower right", fontsize=6, title="init")
    fig.tight_layout()
    return fig
