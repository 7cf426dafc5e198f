"""Figure 7: task score vs sequence length per recurrent model (report.figures.rnn_seq_len),
with the stats stage's 95 % CIs; dotted: the trivial predictor."""
import matplotlib.pyplot as plt

from vgbench.figures import style
from vgbench.figures._data import ci_lines, conditions_of, spec


def make(frames):
    sp = spec(frames, "rnn_seq_len")
    s = conditions_of(frames, sp["study"]) if sp.get("study") else None
    ok = s is not None and not s.empty and "task_args.seq_len" in s
    tasks = sorted(s["task"].unique()) if ok else []
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(2.5 * max(1, len(tasks)), 2.4), squeeze=False)
    if not tasks:
        style.empty(axes[0, 0])
        return fig
    for ax, task in zip(axes.flat, tasks):
        d = s[s["task"] == task]
        ci_lines(ax, d, "task_args.seq_len", sp.get("variants") or sorted(d["variant"].unique()),
                 legend=ax is axes.flat[-1])
        base = d.groupby("task_args.seq_len")["baseline_value"].first()
        ax.plot(base.index, base.values, ":", marker="_", ms=10, color="0.4", lw=0.8)
        acc = str(d["metric"].iloc[0]).endswith("acc")
        ax.set_title(task)
        ax.set_xlabel("sequence length T")
        ax.set_xticks(sorted(d["task_args.seq_len"].unique()))  # the lengths trained (25 was unlabelled)
        ax.set_ylabel("test accuracy" if acc else "test loss (lower is better)")
    fig.tight_layout()
    return fig
