"""Mean-field theory at the frontier, one figure. (a) The phase diagram (Schoenholz et al. 2017):
test score of tanh MLPs over sigma_w^2 x depth, with the theory's trainable depth 6 xi_c drawn over
it and the critical sigma_w^2 marked. (b) Dynamical isometry (Saxe et al. 2014; Pennington et al.
2017): the spread of the input-output Jacobian's singular values at init vs depth, per init."""
import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import seaborn as sns

from vgbench import theory
from vgbench.claims import jacobian_spread
from vgbench.figures import style
from vgbench.figures._data import CI, conditions_of, final_runs, spec

XI_FACTOR = 6   # Schoenholz et al.: nets train up to roughly 6 xi_c


def make(frames):
    sp = spec(frames, "phase_diagram")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(7.4, 3.0), gridspec_kw={"width_ratios": [1.25, 1]})
    heat_map(ax, fig, frames, sp.get("study"))
    isometry(bx, frames, sp.get("isometry") or {})
    fig.tight_layout()
    return fig


def isometry(ax, frames, sp: dict) -> None:
    study = sp.get("study")
    runs = final_runs(frames)
    runs = runs[runs["study"] == study] if study and len(runs) else runs.iloc[:0]
    spread = jacobian_spread(frames["curves"][frames["curves"]["study"] == study]) if len(runs) else None
    if spread is None or spread.empty:
        style.empty(ax)
        return
    d = runs.assign(spread=runs["run_id"].astype(str).map(spread)).dropna(subset=["spread"])
    order = [v for v in sp.get("variants") or sorted(d["variant"].unique()) if v in set(d["variant"])]
    sns.lineplot(d, x="depth", y="spread", hue="variant", hue_order=order, style="variant", style_order=order,
                 markers=True, ax=ax, linewidth=1, **CI)
    ax.set_xscale("log", base=2)
    depths = sorted(d["depth"].unique())
    ax.set_xticks(depths)
    ax.set_xticklabels([f"{int(x)}" for x in depths])
    ax.xaxis.set_minor_locator(mticker.NullLocator())
    ax.set_xlabel("depth (hidden layers)")
    ax.set_ylabel("spread of log10 singular values of d$h_L$/d$x$ at init")
    ax.set_title("(b) dynamical isometry", loc="left")


def heat_map(ax, fig, frames, study) -> None:
    cond = conditions_of(frames, study) if study else None
    if cond is None or cond.empty or not {"weight_var", "depth"} <= set(cond):
        style.empty(ax)
        return
    runs = final_runs(frames)
    runs = runs[runs["study"] == study]
    act = str(runs["activation"].iloc[0])
    sb2 = float(runs["bias_var"].iloc[0])
    chance = float(runs["baseline_value"].iloc[0]) if "baseline_value" in runs else None
    grid = cond.pivot_table(index="depth", columns="weight_var", values="value_mean")
    sw, dp = grid.columns.to_numpy(float), grid.index.to_numpy(float)

    def edges(v, log=False):
        v = np.log(v) if log else v
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[v[0] - (mid[0] - v[0] if len(v) > 1 else 0.5)], mid,
                            [v[-1] + (v[-1] - mid[-1] if len(v) > 1 else 0.5)]])
        return np.exp(e) if log else e

    m = ax.pcolormesh(edges(sw), edges(dp, log=True), grid.to_numpy(), cmap="viridis", shading="flat",
                      vmin=chance if chance is not None else None)
    fig.colorbar(m, ax=ax, label="test score (mean over seeds)")
    ax.set_yscale("log")
    fine = np.linspace(sw.min(), sw.max(), 200)
    xi = np.array([theory.depth_scales(act, s, sb2)["xi_c"] for s in fine])
    ylo, yhi = edges(dp, log=True)[[0, -1]]
    edge = [pe.withStroke(linewidth=2.6, foreground="black")]   # white on black: visible on any colour
    ax.plot(fine, np.clip(XI_FACTOR * xi, ylo, yhi), color="white", lw=1.5, ls="--", path_effects=edge,
            label=f"theory: {XI_FACTOR} $\\xi_c$")
    crit = theory.critical_weight_var(act, sb2)
    if sw.min() <= crit <= sw.max():
        ax.axvline(crit, color="white", lw=1.0, ls=":", path_effects=edge, label=f"critical $\\sigma_w^2$ = {crit:.2f}")
    from vgbench.stats import outcomes
    per, agree = theory.phase_boundary(outcomes(frames["runs"]), study, factor=XI_FACTOR)
    if len(per) and (per["measured_depth"] > 0).any():
        m = per[per["measured_depth"] > 0]
        ax.plot(m["weight_var"], m["measured_depth"], ls="none", marker="o", ms=4, mfc="white", mec="black",
                label=f"measured: deepest trained (cells agreeing: {100 * agree['cell_agreement']:.0f}%)")
    ax.set_ylim(ylo, yhi)
    ax.set_yticks(dp)
    ax.set_yticklabels([f"{int(d)}" for d in dp])
    ax.yaxis.set_minor_locator(mticker.NullLocator())
    ax.set_xticks(sw)
    ax.set_xticklabels([f"{s:g}" for s in sw], fontsize=6)
    ax.set_xlabel("$\\sigma_w^2$ (weight variance x fan-in), $\\sigma_b^2$ = " + f"{sb2:g}")
    ax.set_ylabel("depth (hidden layers)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=6, frameon=False)
    ax.set_title("(a) phase diagram", loc="left")
