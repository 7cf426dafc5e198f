"""Figure 7: task score vs sequence length per recurrent model, trivial predictor dotted."""
import matplotlib.pyplot as plt
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import final_runs
from vgbench.scores import outcome


def make(frames):
    runs = final_runs(frames)
    s = runs[runs["study"] == "rnn_tasks"].copy() if len(runs) else runs
    tasks = sorted(s["task"].unique()) if len(s) else []
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(2.5 * max(1, len(tasks)), 2.4), squeeze=False)
    if not tasks:
        style.empty(axes[0, 0])
        return fig
    s["score"] = outcome(s, "test")["score"]
    order = [v for v in ["rnn", "irnn", "lstm", "gru", "rnn_clip", "irnn_clip", "lstm_clip", "gru_clip"]
             if v in set(s["variant"])]
    for ax, task in zip(axes.flat, tasks):
        d = s[s["task"] == task]
        acc = d["baseline_metric"].iloc[0] == "acc"
        d = d.assign(metric=d["score"] if acc else -d["score"])
        sns.lineplot(d, x="task_args.seq_len", y="metric", hue="variant", hue_order=order, errorbar=("ci", 95),
                     marker="o", ax=ax, legend=ax is axes.flat[-1], linewidth=1)
        base = d.groupby("task_args.seq_len")["baseline_value"].first()
        ax.plot(base.index, base.values, ":", marker="_", ms=10, color="0.4", lw=0.8)
        ax.set_title(task)
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("test accuracy" if acc else "test loss (lower is better)")
    if axes.flat[-1].get_legend():
        sns.move_legend(axes.flat[-1], "center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig
