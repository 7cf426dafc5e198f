"""Is a sequence of length T like a net of depth T? The back-propagated error norm at initialisation
per time step of a recurrent net (||dL/dh_t||, counted back from the last step) beside the same norm
per layer of an MLP (||dL/dh_l||, counted back from the top layer), both relative to where the loss
enters, with the mean-field per-layer prediction for the MLP.

The profile's report names what each line shows, e.g.
    length_vs_depth: {rnn: {study: rnn_tasks, variant: rnn, task: adding},
                      mlp: {study: init_depth, activation: tanh, init: default}}
every key but `study` selects final runs by that column; the recurrent runs at their longest length.
"""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from vgbench.figures import style
from vgbench.figures._data import CI, curves_of, final_runs, log_rows, matching, spec

SEQ = "task_args.seq_len"


def _relative(frames, study: str, kind: str, run_ids) -> pd.DataFrame:
    """log10 of each run's norm at step 0 relative to its last index (the output end), by distance
    back from that end."""
    c = curves_of(frames, study, kind, run_ids)
    c = c[(c["step"] == 0) & (c["name"] != "logits")]
    if c.empty:
        return c
    c = c.assign(back=c.groupby("run_id")["index"].transform("max") - c["index"])
    c = log_rows(c, [], "back")   # only as far back as every run's norm is still a positive float32
    if c.empty:
        return c
    c = c.assign(lg=np.log10(c["value"].astype(float)))
    ref = c[c["back"] == 0].set_index("run_id")["lg"]
    return c.assign(rel=c["lg"] - c["run_id"].map(ref))


def make(frames):
    sp = spec(frames, "length_vs_depth")
    fig, ax = plt.subplots(figsize=(3.6, 2.6))
    runs = final_runs(frames)
    rsel, msel = sp.get("rnn") or {}, sp.get("mlp") or {}
    rnn, mlp = (matching(runs, sel) if len(runs) and sel else runs.iloc[:0] for sel in (rsel, msel))
    if len(rnn) and SEQ in rnn:
        rnn = rnn[rnn[SEQ] == rnn[SEQ].max()]
    parts = []
    if len(rnn):
        r = _relative(frames, rsel["study"], "hidden_t", rnn["run_id"])
        if len(r):
            T = int(rnn[SEQ].max()) if SEQ in rnn else int(r["back"].max()) + 1
            parts.append(r.assign(line=f"recurrent, per time step (T = {T})"))
    if len(mlp):
        m = _relative(frames, msel["study"], "signal", mlp["run_id"])
        if len(m):
            parts.append(m.assign(line=f"MLP, per layer (depth {int(mlp['depth'].max())})"))
    if not parts:
        style.empty(ax)
        return fig
    d = pd.concat(parts, ignore_index=True)
    sns.lineplot(d, x="back", y="rel", hue="line", ax=ax, linewidth=1, **CI)
    th = frames.get("theory")
    if th is not None and len(th) and {"activation", "init"} <= set(msel):
        t = th[(th["activation"] == msel["activation"]) & (th["init"] == msel["init"])].sort_values("layer")
        if len(t):
            lg = np.log10(t["predicted"].astype(float).to_numpy())
            ax.plot(t["layer"].max() - t["layer"], lg - lg[-1], ls="--", lw=0.8, color="k",
                    label="mean-field, per layer")
    ax.set_xlabel("steps / layers back from the output")
    ax.set_ylabel(r"$\log_{10}$ error norm relative to the output end")
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig
