"""Figure 6: ||dL/dh_t|| vs t at initialisation for rnn / IRNN / LSTM / GRU (longest T)."""
import matplotlib.pyplot as plt

from vgbench.figures import style
from vgbench.figures._data import curves_of, final_runs, log_lines, spec


def make(frames):
    sp = spec(frames, "rnn_grad_time")
    study, models = sp.get("study"), sp.get("variants") or []
    runs = final_runs(frames)
    s = runs[runs["study"] == study] if len(runs) else runs
    tasks = sorted(s["task"].unique()) if len(s) else []
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(2.5 * max(1, len(tasks)), 2.4), squeeze=False)
    if not tasks:
        style.empty(axes[0, 0])
        return fig
    T = s["task_args.seq_len"].max()
    for ax, task in zip(axes.flat, tasks):
        sel = s[(s["task"] == task) & (s["task_args.seq_len"] == T) & s["variant"].isin(models)]
        c = curves_of(frames, study, "hidden_t", sel["run_id"])
        c = c[c["step"] == 0]
        order = [m for m in models if m in set(c["variant"])]
        if not log_lines(ax, c, "index", "value", "variant", hue_order=order, legend=ax is axes.flat[-1]):
            continue
        ax.set_title(f"{task}, T = {T}, step 0")
        ax.set_xlabel("time step t")
        ax.set_ylabel(r"$\|\partial L/\partial h_t\|$")
    fig.tight_layout()
    return fig
