"""Profiles -> RunSpecs: stable ids, validation naming the study and the run."""
import re
from pathlib import Path

import pytest
import yaml

from vgbench import cli, grid
from vgbench.config import ConfigError, load

REPO = Path(__file__).resolve().parents[1]

PROFILES = ["configs/smoke.yaml", "configs/default.yaml", "configs/full.yaml"]


def write(tmp_path, data):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def small(**study):
    base = {"base": {"depth": 2, "width": 4, "steps": 2}, "seeds": 2}
    return {"profile": "t", "studies": {"s": {**base, **study}}}


@pytest.mark.parametrize("path", PROFILES)
def test_real_profiles_load(path):
    prof = grid.load_profile(path)
    # smoke mirrors default (plus the studies only full runs, at toy size); full runs all of default's
    default = set(grid.load_profile("configs/default.yaml").studies)
    assert grid.final_specs(prof, {}) and default <= set(prof.studies)
    if "smoke" in path:
        assert set(prof.studies) == set(grid.load_profile("configs/full.yaml").studies)


def test_default_profile_covers_the_paper():
    """The pre-registered design (configs/default.yaml header): what it must contain to decide its questions."""
    prof = grid.load_profile("configs/default.yaml")
    init = prof.studies["init_depth"]
    assert init.base["depth"] >= 50 and init.base["width"] >= 256
    assert len(init.axes["activation"]) == 9 and len(init.axes["init"]) == 6
    mit = prof.studies["mlp_mitigations"]
    assert min(mit.axes["depth"]) <= 2 and len(mit.axes["depth"]) >= 5 and mit.base["steps"] >= 2000
    for needed in ("baseline", "relu", "relu_he", "modern", "batch_norm", "residual", "greedy_pretrain", "aux_loss",
                   "sigmoid_c01", "leaky_relu", "elu"):
        assert needed in mit.variants
    rnn = prof.studies["rnn_tasks"]
    assert {"rnn", "irnn", "lstm", "gru"} <= set(rnn.variants) and rnn.base["width"] >= 32
    assert max(rnn.axes["task_args.seq_len"]) >= 100 and rnn.base["steps"] >= 1000
    assert "cnn_sigmoid" in prof.studies["cnn_resnet"].variants
    final = [s for s in prof.studies.values() if s.name != "init_depth"]
    assert all(len(s.seeds) >= 5 for s in final)
    # binary outcomes get the seeds the power calculation asks for; every question is decided by a claim
    for c in prof.claims:
        if c.test == "rates":
            assert len(prof.studies[c.study].seeds) >= 8, c.id
    assert {q.id for q in prof.questions} == {c.question for c in prof.claims}
    # tuning and pilot seeds are disjoint from the final ones
    finals = {x for s in prof.studies.values() for x in s.seeds}
    assert not finals & {x for s in prof.studies.values() for x in s.tune_seeds}
    for name in ("evidence_pilot", "default3_pilot"):
        pilot = grid.load_profile(f"configs/pilots/{name}.yaml")
        assert not finals & {x for s in pilot.studies.values() for x in s.seeds}, name
    # the redesign's pilots: the shipped default runs (seeds 0-4) and the follow-ups (20-49)
    redesigned = set(prof.studies["mlp_mitigations"].seeds) | set(prof.studies["cnn_resnet"].seeds)
    followup = {x for s in grid.load_profile("configs/followup.yaml").studies.values() for x in s.seeds}
    assert not redesigned & (set(range(5)) | followup)
    # the second redesign's pilots: the first's runs (0-7, 1000-1009) and the replication's rounds
    replication = {x for s in grid.load_profile("configs/replication.yaml").studies.values() for x in s.seeds}
    again = {x for n in ("mlp_mitigations", "rnn_tasks", "rnn_mnist1d", "step_budget") for x in prof.studies[n].seeds}
    assert not again & (set(range(8)) | set(range(1000, 1010)) | replication)
    assert len(prof.studies["step_budget"].seeds) >= 80
    # every tuned study selects its lr on two seeds or more (one seed made he_with_relu's verdict fragile)
    assert all(len(s.tune_seeds) >= 2 for s in prof.studies.values() if s.lr_grid)
    # what moved out of the default profile to pay for longer runs is still run by full.yaml
    full = grid.load_profile("configs/full.yaml")
    for v in ("relu_normal", "relu_xavier", "clip", "weight_decay", "momentum", "layer_norm", "tanh", "adam",
              "sigmoid_c005"):
        assert v in full.studies["mlp_mitigations"].variants
    assert {"rnn_clip", "lstm_clip"} <= set(full.studies["rnn_tasks"].variants)


def test_replication_seeds_are_new_to_every_pilot_and_earlier_profile():
    """Each replication round is pre-registered on seeds no pilot and no earlier final run has seen
    (its pilots are earlier profiles' final runs and configs/pilots/): a reused seed would let the
    pilot's noise decide the verdict it sized."""
    import glob
    rep = grid.load_profile("configs/replication.yaml")
    finals = {x for s in rep.studies.values() for x in s.seeds}
    assert not finals & {x for s in rep.studies.values() for x in s.tune_seeds}
    others = [p for p in sorted(glob.glob("configs/*.yaml") + glob.glob("configs/pilots/*.yaml"))
              if p != "configs/replication.yaml"]
    for path in others:
        seen = {x for s in grid.load_profile(path).studies.values() for x in s.seeds}
        assert not finals & seen, (path, sorted(finals & seen)[:5])


def test_run_ids_are_stable_readable_and_unique(tmp_path):
    p = write(tmp_path, small(variants={"a": {}, "b": {"activation": "relu"}}, axes={"depth": [2, 3]}))
    ids1 = [s.run_id for s in grid.final_specs(grid.load_profile(p), {})]
    ids2 = [s.run_id for s in grid.final_specs(grid.load_profile(p), {})]
    assert ids1 == ids2 and len(set(ids1)) == 8
    assert ids1[0].startswith("s-a-depth2-s0-")
    # a config change changes the id; an unrelated study does not change this one's ids
    p2 = write(tmp_path, small(variants={"a": {}, "b": {"activation": "relu"}}, axes={"depth": [2, 3, 4]}))
    ids3 = [s.run_id for s in grid.final_specs(grid.load_profile(p2), {})]
    assert set(ids1) < set(ids3)


def test_tuning_and_selection_keys(tmp_path):
    p = write(tmp_path, small(lr_grid=[0.1, 1.0], tune_steps=1, axes={"depth": [2, 3]}))
    prof = grid.load_profile(p)
    tune = grid.tune_specs(prof)
    assert len(tune) == 4 and {s.cfg.steps for s in tune} == {1}
    keys = {s.tune_key for s in tune}
    sel = {k: 0.1 for k in keys}
    final = grid.final_specs(prof, sel)
    assert {s.tune_key for s in final} == keys and {s.cfg.lr for s in final} == {0.1}
    with pytest.raises(ConfigError, match="no selected lr"):
        grid.final_specs(prof, {"other": 1.0})


@pytest.mark.parametrize("bad,msg", [
    ({"profile": "t"}, "studies"),
    ({"profile": "t", "studys": {}}, "did you mean 'studies'"),
    (small(axes={"depth": []}), "axis 'depth' must be a non-empty list"),
    (small(axes={"depth": [2, 2]}), "repeats"),
    (small(axis={"depth": [2]}), "did you mean 'axes'"),
    (small(axes={"activation": ["relu", "swish"]}), "study 's', run base activationswish seed 0"),
    (small(variants={"bad": {"model": "cnn", "residual": True}}), "study 's', run bad"),
    (small(seeds=0), "seeds"),
    (small(lr_grid=[0.1, -1]), "lr_grid"),
    (small(variants={"a": {}, "b": {"activation": "sigmoid"}}), "same run config"),
    (small(lr_grid=[]), "lr_grid is empty"),
    (small(lr_grid=[0.1], tune_seeds=[1]), "tune_seeds [1] and the final seeds share 1"),
    (small(lr_grid=[0.1], tune_seeds=3), "tune_seeds 3 (a count: seeds 0..2) and the final seeds share 0, 1"),
    (small(variants={"a": {}, "b": {"activation": "relu"}}, baseline={"b": "b"}), "compares a variant with itself"),
    (small(variants={"a": {"depth": 5}, "b": {}}, axes={"depth": [2, 3]}), "variant 'a' sets depth, an axis"),
    (small(base={"model": "rnn", "task": "adding", "width": 4, "steps": 1}, axes={"task_args.seq_len": [5, 6]},
           variants={"long": {"task_args": {"seq_len": 50}}, "b": {"width": 8}}), "sets task_args.seq_len, an axis"),
    ({**small(), "profile": "../x"}, "profile name '../x' must use"),
    (small(variants={"a": {}, "b": {"width": 8}}, baseline={"b": ["a"]}), "baseline pair b: ['a'] names an unknown"),
    (small(base=3), "study 's': 'base' must be a mapping of run config keys, got 3"),  # was an AttributeError
])
def test_bad_profiles_fail_at_load_naming_study(tmp_path, bad, msg):
    with pytest.raises(ConfigError, match=re.escape(msg)):
        grid.load_profile(write(tmp_path, bad))


def test_grid_command_lists_runs(capsys):
    assert cli.main(["grid", "configs/smoke.yaml", "--stage", "final"]) == 0
    out = capsys.readouterr()
    ids = out.out.split()
    assert len(ids) == len(grid.final_specs(grid.load_profile("configs/smoke.yaml"), {}))
    assert "final runs" in out.err


def test_grid_command_bad_profile_exit_2(tmp_path, capsys):
    assert cli.main(["grid", str(write(tmp_path, small(axes={"depth": []})))]) == 2
    assert "axis 'depth'" in capsys.readouterr().err


def test_select_lr_on_a_profile_without_tuned_studies(tmp_path, capsys):
    """A profile whose studies all fix their lr: select-lr writes an empty table, no crash."""
    import yaml
    from vgbench import cli
    from vgbench.select_lr import read_selected
    raw = {"profile": "notune", "studies": {"s": {"base": {"model": "mlp", "depth": 2, "width": 4, "steps": 1},
                                                   "seeds": 1}}}
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(raw))
    assert cli.main(["select-lr", str(p), "--results", str(tmp_path / "r")]) == 0
    assert "0 conditions tuned" in capsys.readouterr().out
    assert read_selected(tmp_path / "r/tuning/selected_lr.csv") == {}


@pytest.mark.parametrize("panel,error", [
    ({"where": {"lr": 0.1}}, None), ({"where": {"lr": 0.3}}, "not a value of an axis of study 's'"),
    ({"where": {"width": 4}}, "not a value of an axis of study 's'"),
    # a mapping or list given the wrong type was an AttributeError (a traceback, exit 1)
    ({"where": 0}, "panels[0].where must be a mapping axis -> value, got 0"),
    ({"variants": "base"}, "panels[0].variants must be a list of variant names, got 'base'")])
def test_figure_panel_where_names_an_axis_value(tmp_path, panel, error):
    prof = small(axes={"depth": [2, 3], "lr": [0.01, 0.1]})
    prof["report"] = {"figures": {"accuracy_vs_depth": {"panels": [{"study": "s", **panel}]}}}
    if error is None:
        assert grid.load_profile(write(tmp_path, prof)).report["figures"]["accuracy_vs_depth"]["panels"][0] == \
            {"study": "s", **panel}
    else:
        with pytest.raises(ConfigError, match=re.escape(error)):
            grid.load_profile(write(tmp_path, prof))


def test_time_estimate_puts_the_longest_jobs_first():
    """config.estimate_seconds orders the pipeline's jobs (Snakemake priority, longest first):
    it scales with the steps, and in the default profile the recurrent jobs on T = 100 -- the
    longest, measured -- outrank every MLP job."""
    from vgbench.config import estimate_seconds
    cfg = load({"task": "mnist1d", "model": "mlp", "depth": 5, "width": 64, "steps": 1000})
    assert estimate_seconds(load({**cfg.to_dict(), "steps": 3000})) == pytest.approx(3 * estimate_seconds(cfg))
    prof = grid.load_profile(REPO / "configs/default.yaml")
    lr = {s.tune_key: s.cfg.lr for s in grid.tune_specs(prof)}  # any lr of the grid: the cost ignores it
    cost = grid.job_seconds(grid.jobs(grid.final_specs(prof, lr)))
    rnn = [c for j, c in cost.items() if "-rnn_tasks-" in j]
    mlp = [c for j, c in cost.items() if "-mlp_mitigations-" in j]
    assert len(rnn) == 4 and len(mlp) == len(prof.studies["mlp_mitigations"].variants) and min(c for c in rnn) > max(mlp)
