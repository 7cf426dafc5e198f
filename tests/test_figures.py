"""Each figure's make(frames) on a tiny synthetic frame, and the provenance stamp."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from vgbench import grid, paths, provenance
from vgbench.figures import NAMES, Frames, style

SMOKE = Path(__file__).resolve().parents[1] / "configs/smoke.yaml"


def synthetic_frames(n_seeds: int = 2):
    rows, curves = [], []
    rng = np.random.default_rng(0)
    specs = [("init_depth", v, {"activation": a, "init": i}, {"depth": 4, "activation": a, "init": i, "steps": 0})
             for v, a, i in (("base", "sigmoid", "default"), ("base", "relu", "he"))]
    specs += [("mlp_mitigations", v, {"depth": d}, {"depth": d, "activation": "sigmoid" if v == "baseline" else "relu",
                                                    "init": "default"})
              for v in ("baseline", "relu", "relu_he", "batch_norm") for d in (2, 4)]
    specs += [("cnn_resnet", v, {"depth": d}, {"depth": d}) for v in ("cnn", "resnet") for d in (2, 4)]
    specs += [("rnn_tasks", v, {"task": t, "task_args.seq_len": T}, {"task": t, "task_args.seq_len": T, "depth": 1})
              for v in ("rnn", "lstm") for t in ("adding", "temporal_order") for T in (5, 10)]
    specs += [("explosion", v, {}, {"depth": 3}) for v in ("high_lr", "high_lr_clip")]
    specs += [("shallow_relu", v, {}, {"depth": 1}) for v in ("relu", "tanh")]
    specs += [("tanh_criticality", "base", {"weight_var": w, "depth": d},
               {"depth": d, "activation": "tanh", "init": "gaussian", "weight_var": w, "bias_var": 0.05})
              for w in (1.0, 1.76, 4.0) for d in (2, 6)]
    specs += [("dyn_isometry", v, {"depth": d}, {"depth": d, "activation": "tanh", "init": v})
              for v in ("gaussian", "orthogonal") for d in (2, 6)]
    for study, variant, labels, cfg in specs:
        for seed in range(n_seeds):
            rid = f"{study}-{variant}-{json.dumps(labels, sort_keys=True)}-{seed}"
            acc_task = cfg.get("task", "mnist1d") != "adding"
            rows.append({"run_id": rid, "study": study, "variant": variant, "stage": "final", "seed": seed,
                         "labels": json.dumps(labels), "condition_id": f"{study}{variant}{labels}",
                         "task": cfg.get("task", "mnist1d"), "sigmoid_grad_c": 0.0, "width": 8, "lr": 0.1,
                         "activation": cfg.get("activation", "relu"), "init": cfg.get("init", "he"),
                         "depth": cfg["depth"], "task_args.seq_len": cfg.get("task_args.seq_len"),
                         "weight_var": cfg.get("weight_var", 1.0), "bias_var": cfg.get("bias_var", 0.0),
                         "status": "diverged" if variant == "high_lr" and seed else "ok",
                         "baseline_metric": "acc" if acc_task else "loss", "baseline_value": 0.1 if acc_task else 1 / 6,
                         "final.test/acc": rng.uniform(0.1, 0.9) if acc_task else np.nan,
                         "final.test/loss": rng.uniform(0.01, 0.2), "final.val/acc": 0.5, "final.val/loss": 0.1,
                         "max_grad_norm": rng.uniform(1, 1e4), "wall_s": 1.0,
                         "grad_ratio_init": 10.0 ** -cfg["depth"], "grad_ratio_final": 0.1})
            T = cfg.get("task_args.seq_len", 0)
            for step in (0, 5, 10):
                for l in range(cfg["depth"] + 1):
                    curves.append((rid, "signal", step, l, "logits" if l == cfg["depth"] else f"layer{l}", 10.0 ** -l * (1 + 0.1 * seed)))
                    curves.append((rid, "weight_grad", step, l, f"w{l}", 10.0 ** -(cfg["depth"] - l) * (1 + 0.1 * seed)))
                for l in range(cfg["depth"]):
                    curves.append((rid, "saturation", step, l, f"layer{l}", 0.1 * l * (1 + 0.1 * seed)))
                    curves.append((rid, "dead", step, l, f"layer{l}", 0.05 * l * (1 + 0.1 * seed)))
                for t in range(T):
                    curves.append((rid, "hidden_t", step, t, "layer0", 0.9 ** (T - t) * (1 + 0.1 * seed)))
                curves.append((rid, "metric", step, -1, "train/loss", 2.0 / (1 + step) + 0.1 * seed))
                curves.append((rid, "metric", step, -1, "train/weight_norm", 5.0 * (1 + step) ** (1 + seed)))
            if study == "dyn_isometry":   # singular values: spread growing with depth for gaussian only
                for e in range(2):
                    for k in range(4):
                        spread = 0.1 if variant == "orthogonal" else 0.2 * cfg["depth"]
                        curves.append((rid, "jacobian_sv", 0, k, f"example{e}", 10.0 ** (spread * (k - 1.5))))
    runs = pd.DataFrame(rows)
    tune = runs[runs["study"] == "mlp_mitigations"].assign(stage="tune", lr=lambda d: np.where(d.seed, 0.1, 1.0))
    runs = pd.concat([runs, tune], ignore_index=True)
    c = pd.DataFrame(curves, columns=["run_id", "kind", "step", "index", "name", "value"])
    c = c.merge(runs[runs.stage == "final"][["run_id", "study", "variant", "condition_id"]], on="run_id")
    from vgbench import stats
    cond = stats.condition_table(stats.outcomes(runs))
    comp = pd.DataFrame({"study": ["mlp_mitigations"] * 2, "variant": ["relu", "relu_he"], "baseline": ["baseline"] * 2,
                         "labels": ['{"depth": 4}'] * 2, "quantity": ["score"] * 2, "diff": [0.1, 0.3],
                         "diff_ci_low": [-0.05, 0.2], "diff_ci_high": [0.2, 0.4], "significant": [False, True]})
    ranks = pd.DataFrame({"study": ["mlp_mitigations"] * 4, "variant": ["baseline", "relu", "relu_he", "batch_norm"],
                          "mean_rank": [3.8, 2.1, 1.5, 2.6]})
    fried = pd.DataFrame({"study": ["mlp_mitigations"], "k": [4], "n_blocks": [4], "chi2": [9.0], "p": [0.03], "cd": [2.3]})
    theory = pd.DataFrame({"activation": ["sigmoid"] * 4, "init": ["default"] * 4, "layer": range(4),
                           "predicted": [1e-3, 1e-2, 1e-1, 1.0]})
    frames = Frames(".", report=grid.load_profile(SMOKE).report)  # what the smoke profile shows
    frames.update({"runs": runs, "curves": c, "conditions": cond, "comparisons": comp, "claims": pd.DataFrame(),
                   "ranks": ranks, "friedman": fried, "theory": theory})
    return frames


@pytest.mark.parametrize("name", NAMES)
def test_figure_draws_data_from_synthetic_frame(name, tmp_path):
    import importlib
    style.apply()
    fig = importlib.import_module(f"vgbench.figures.{name}").make(synthetic_frames())
    assert isinstance(fig, Figure)
    drawn = sum(len(ax.lines) + len(ax.collections) + len(ax.patches) + len(ax.texts) for ax in fig.axes)
    assert drawn > 0
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert not any("no data" in t for t in texts), f"{name} found no data in the synthetic frame"
    assert not style.is_blank(fig)
    files = style.save(fig, str(tmp_path / name), {"figure": name, "commit": "abc", "profile_hash": "123"})
    from PIL import Image
    meta = Image.open(files[1]).info
    assert json.loads(meta["Description"])["commit"] == "abc"
    assert b"abc" in open(files[0], "rb").read()


@pytest.mark.parametrize("name", NAMES)
def test_figure_on_empty_frames_says_so_and_is_blank(name, tmp_path):
    """Blank: the paper leaves the figure out (paper.py reads it back from the file's provenance)."""
    import importlib
    empty = {k: pd.DataFrame() for k in synthetic_frames()}
    fig = importlib.import_module(f"vgbench.figures.{name}").make(empty)
    assert any("no data" in t.get_text() for ax in fig.axes for t in ax.texts)
    assert style.is_blank(fig)
    style.save(fig, str(tmp_path / name), {"figure": name})
    assert provenance.blank_in(tmp_path / f"{name}.png")


@pytest.mark.parametrize("name", NAMES)
def test_figure_drawn_twice_is_byte_identical(name, tmp_path):
    """No unseeded bootstrap, no timestamp: two draws from the same frames give the same files."""
    import importlib
    import time
    style.apply()
    mod = importlib.import_module(f"vgbench.figures.{name}")
    prov = {"figure": name, "commit": "abc", "profile_hash": "123"}
    # 5 seeds: with 2 a percentile bootstrap CI is min..max whatever its seed, and hides the bug
    a = style.save(mod.make(synthetic_frames(5)), str(tmp_path / "a"), prov)
    time.sleep(1.1)  # a timestamp in the file would now differ
    b = style.save(mod.make(synthetic_frames(5)), str(tmp_path / "b"), prov)
    for fa, fb in zip(a, b):
        assert Path(fa).read_bytes() == Path(fb).read_bytes(), f"{name}: {Path(fa).suffix} differs"


def test_theory_overlay_drawn_from_tables_read_on_first_use(tmp_path):
    """Figures read stats/theory.csv through Frames.get: the dashed mean-field lines must appear
    when the tables come from disk, not only when a test pre-loads them (dict.get skips __missing__)."""
    from vgbench import paths
    from vgbench.figures import grad_depth_init, load_frames
    f = synthetic_frames()
    paths.aggregate("runs", tmp_path).parent.mkdir(parents=True)
    paths.stats(paths.THEORY, tmp_path).parent.mkdir(parents=True)
    f["runs"].to_parquet(paths.aggregate("runs", tmp_path))
    f["curves"].to_parquet(paths.aggregate("curves", tmp_path))
    f["theory"].to_csv(paths.stats(paths.THEORY, tmp_path), index=False)
    fig = grad_depth_init.make(load_frames(tmp_path, f.report))
    dashed = [ln for ax in fig.axes for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1     # the synthetic theory table has one activation x init: sigmoid, default


def test_matching_selects_rows_by_spec_values_numbers_as_numbers():
    """A profile's `where: {depth: 50}` must match a float column (50.0) and `task: adding` a text one."""
    from vgbench.figures._data import matching
    df = pd.DataFrame({"depth": [50.0, 20.0, np.nan], "task": ["adding", "adding", "copy"], "lr": [0.1, 0.01, 0.1]})
    assert matching(df, {"depth": 50}).index.tolist() == [0]
    assert matching(df, {"task": "adding", "lr": 0.01}).index.tolist() == [1]
    assert matching(df, {"width": 8}).empty           # not a column: nothing, not everything
    assert matching(df, {}).index.tolist() == [0, 1, 2]


class _NoTheory(Frames):
    def __missing__(self, key):
        if key == "theory":
            raise AssertionError("reads stats/theory.csv")
        return super().__missing__(key)


@pytest.mark.parametrize("name", [*NAMES, *paths.TABLE_NAMES])
def test_only_the_outputs_declared_in_uses_theory_read_theory(name):
    """The pipeline draws every figure and table outside paths.USES_THEORY without waiting for
    compute_theory (its ~85 s then overlap them): one that reads theory.csv must be declared."""
    import importlib
    from vgbench import tables
    f = synthetic_frames()
    f.pop("theory")
    f.__class__ = _NoTheory
    if name in NAMES:
        style.apply()
        draw = importlib.import_module(f"vgbench.figures.{name}").make
    else:
        prof = grid.load_profile(SMOKE)
        draw = lambda frames: getattr(tables, name)(frames, prof)  # noqa: E731
    if name in paths.USES_THEORY:
        with pytest.raises(AssertionError, match="theory"):   # a stale declaration fails too
            draw(f)
    else:
        draw(f)


def test_a_figure_band_is_the_tables_seeded_bootstrap_checked_against_scipy():
    """The 95 % band every seaborn line of the figures draws (figures._data.CI) is the tables'
    percentile bootstrap of the mean (2000 resamples, seed 0) of the values in ascending order."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from scipy import stats as st
    from vgbench import stats
    from vgbench.figures._data import CI
    y0 = np.array([0.31, 0.35, 0.29, 0.40, 0.33])
    d = pd.DataFrame({"x": [0] * 5 + [1] * 5, "y": np.r_[y0, y0 + 1.0]})
    fig, ax = plt.subplots()
    sns.lineplot(d, x="x", y="y", ax=ax, **CI)
    band = ax.collections[0].get_paths()[0].vertices
    at0 = sorted(v[1] for v in band if v[0] == 0)
    ref = st.bootstrap((np.sort(y0),), np.mean, confidence_level=0.95, n_resamples=stats.N_BOOT, method="percentile",
                       rng=np.random.default_rng(0)).confidence_interval
    assert at0[0] == pytest.approx(ref.low, abs=1e-12) and at0[-1] == pytest.approx(ref.high, abs=1e-12)
    assert ref.high - ref.low > 0.02   # a real interval, not a point
    plt.close(fig)


@pytest.mark.parametrize("name, base", [("grad_depth_init", lambda x: 10.0 ** -x),
                                        ("grad_depth_training", lambda x: 10.0 ** -x),
                                        ("rnn_grad_time", lambda x: 0.9 ** (10 - x))])
def test_gradient_norms_on_a_log_axis_are_geometric_means_over_the_runs_that_did_not_underflow(name, base):
    """Seed 1's norms are 100x seed 0's, so every drawn line must sit at 10x seed 0's (the mean of
    log10; the arithmetic mean, 50.5x, follows the larger seed). grad_depth_training once drew its
    first panel arithmetically and the others geometrically: seaborn averages in log10 only where
    the axis is already log, and only its shared y made the later panels so. A layer where one run's
    norm underflowed to 0 is left out (averaging the runs left drew seed 0's norm alone there)."""
    import importlib
    f = synthetic_frames()
    c = f["curves"]
    seed1 = c["run_id"].str.endswith("-1") & c["kind"].isin(["signal", "hidden_t"])
    c.loc[seed1, "value"] = c.loc[seed1, "value"] / 1.1 * 100
    under = seed1 & c["run_id"].str.startswith('init_depth-base-{"activation": "sigmoid"') & (c["index"] == 1)
    c.loc[under, "value"] = 0.0
    f["theory"] = pd.DataFrame()   # every line left is a measured one
    fig = importlib.import_module(f"vgbench.figures.{name}").make(f)
    lines = [ln for ax in fig.axes for ln in ax.lines if len(ln.get_xdata()) > 1]
    assert len(lines) == {"grad_depth_init": 2, "grad_depth_training": 3 * 3, "rnn_grad_time": 2 * 2}[name]
    for ln in lines:
        x, y = np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float)
        assert np.allclose(y, 10 * base(x), rtol=1e-9), (ln.get_label(), x, y / base(x))
    if name == "grad_depth_init":
        xs = sorted(tuple(ln.get_xdata()) for ln in lines)
        assert xs == [(0, 1, 2, 3), (0, 2, 3)], xs
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_exploding_weight_norm_lines_are_geometric_means():
    """The synthetic weight norm is 5 (1+step)^(1+seed): over seeds 0 and 1 every line must sit at
    the geometric mean 5 (1+step)^1.5, not the arithmetic 2.5 ((1+step) + (1+step)^2), which the
    panel drew while the rest of the paper's log axes were geometric."""
    import matplotlib.pyplot as plt
    from vgbench.figures import exploding
    style.apply()
    fig = exploding.make(synthetic_frames())
    panels = [row[2] for row in np.asarray(fig.axes[:len(fig.axes)]).reshape(-1, 3)]
    lines = [ln for ax in panels for ln in ax.lines if len(ln.get_xdata()) > 1]
    assert len(lines) == 4      # 2 studies x 2 variants
    for ln in lines:
        x, y = np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float)
        assert np.allclose(y, 5 * (1 + x) ** 1.5, rtol=1e-9), (ln.get_label(), x, y)
    plt.close(fig)


@pytest.mark.parametrize("name", ["grad_depth_init", "grad_depth_training", "rnn_grad_time", "grad_ratio_curves",
                                  "length_vs_depth"])
def test_a_figure_whose_every_gradient_norm_underflowed_says_so(name):
    """Every recorded norm 0 (float32 underflow everywhere): length_vs_depth once failed with a
    TypeError; the others drew empty axes without a word."""
    import importlib
    import matplotlib.pyplot as plt
    from vgbench.figures._data import UNDERFLOWED
    f = synthetic_frames()
    c = f["curves"]
    c.loc[c["kind"].isin(["signal", "hidden_t", "weight_grad"]), "value"] = 0.0
    f["theory"] = pd.DataFrame()
    fig = importlib.import_module(f"vgbench.figures.{name}").make(f)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    # no measured line (grad_ratio_curves' reference line at 1 aside)
    assert not [ln for ax in fig.axes for ln in ax.lines if len(set(ln.get_ydata())) > 1 or len(ln.get_xdata()) > 2]
    if name != "length_vs_depth":   # (its one panel says "no data")
        assert texts and set(texts) == {UNDERFLOWED}, texts
        assert not style.is_blank(fig)   # a finding, kept in the paper
    plt.close(fig)
