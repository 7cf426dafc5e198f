"""One run end to end: the run-directory contract, determinism, divergence, W&B."""
import json

import pandas as pd
import pytest

from vgbench import cli, paths
from vgbench.config import load
from vgbench.instruments import schedule
from vgbench.train import run


def test_run_directory_contract(tmp_path, tiny):
    s = run(load(tiny), tmp_path / "r")
    d = tmp_path / "r"
    assert sorted(p.name for p in d.iterdir()) == sorted([paths.CONFIG, paths.METRICS, paths.GRADIENTS, paths.SUMMARY])
    cfg = json.loads((d / paths.CONFIG).read_text())
    assert cfg["config"] == load(tiny).to_dict() and "torch" in cfg["versions"]
    m = pd.read_csv(d / paths.METRICS)
    assert list(m.columns) == ["step", "split", "metric", "value"]
    assert set(m.split) == {"train", "val", "test"}
    g = pd.read_parquet(d / paths.GRADIENTS)
    assert list(g.columns) == ["step", "kind", "index", "name", "value"]
    assert set(g.kind) == {"weight_grad", "signal", "saturation"}
    assert sorted(g.step.unique()) == schedule(20, 4) and g.step.min() == 0 and g.step.max() == 20
    w0 = g[(g.kind == "weight_grad") & (g.step == 0)].sort_values("index")
    assert list(w0.name) == ["ops.0.weight", "ops.1.weight", "ops.2.weight", "head.weight"]
    assert s["grad_ratio_init"] == pytest.approx(w0.value.iloc[0] / w0.value.iloc[-1], rel=1e-6, abs=0)
    assert s["status"] == "ok" and s["steps"] == 20 and s["diverged_at_step"] is None
    assert 0 <= s["final"]["test/acc"] <= 1


def test_same_seed_identical_metrics(tmp_path, tiny):
    run(load(tiny), tmp_path / "a")
    run(load(tiny), tmp_path / "b")
    run(load({**tiny, "seed": 1}), tmp_path / "c")
    a, b, c = ((tmp_path / x / paths.METRICS).read_text() for x in "abc")
    assert a == b and a != c


def test_huge_lr_is_recorded_as_diverged(tmp_path, tiny):
    code = cli.main(["train", "--set", "lr=1e6", "--set", "activation=relu", "--set", "steps=50",
                     "--set", "depth=3", "--set", "width=16", "--out", str(tmp_path / "r")])
    assert code == 0
    s = json.loads((tmp_path / "r" / paths.SUMMARY).read_text())
    assert s["status"] == "diverged" and 0 <= s["diverged_at_step"] < 50


def test_steps_zero_measures_init_only(tmp_path, tiny):
    s = run(load({**tiny, "steps": 0}), tmp_path / "r")
    g = pd.read_parquet(tmp_path / "r" / paths.GRADIENTS)
    assert set(g.step) == {0} and s["steps"] == 0 and s["grad_ratio_init"] > 0


def test_recurrent_records_hidden_t(tmp_path):
    cfg = load({"task": "adding", "model": "lstm", "depth": 2, "width": 8, "steps": 5,
                "task_args": {"seq_len": 15, "n_train": 200, "n_val": 50, "n_test": 50}})
    run(cfg, tmp_path / "r")
    g = pd.read_parquet(tmp_path / "r" / paths.GRADIENTS)
    h = g[(g.kind == "hidden_t") & (g.step == 0)]
    assert sorted(h["index"].unique()) == list(range(15)) and set(h.name) == {"layer0", "layer1"}
    # loss only at the last step: the gradient reaching h_t shrinks going back in time
    top = h[h.name == "layer1"].sort_values("index").value.to_numpy()
    assert top[-1] > top[0]


def test_dead_units_recorded_for_relu(tmp_path, tiny):
    run(load({**tiny, "activation": "relu"}), tmp_path / "r")
    g = pd.read_parquet(tmp_path / "r" / paths.GRADIENTS)
    d = g[g.kind == "dead"]
    assert len(d) and d.value.between(0, 1).all()


def test_complete_run_is_not_overwritten_partial_is_redone(tmp_path, tiny, capsys):
    out = tmp_path / "r"
    run(load(tiny), out)
    before = (out / paths.SUMMARY).read_text()
    assert cli.main(["train", "--set", "depth=3", "--out", str(out)]) == 2
    assert "complete run" in capsys.readouterr().err and (out / paths.SUMMARY).read_text() == before
    (out / paths.SUMMARY).unlink()                   # a killed run: no summary
    (out / ".summary.json.123.tmp").write_text("x")  # write_json_atomic's temp file
    run(load(tiny), out)
    assert paths.is_complete(out) and not (out / ".summary.json.123.tmp").exists()


def test_wandb_offline_run_has_history(tmp_path, tiny, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    run(load(tiny), tmp_path / "r")
    runs = list((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = {p.name for p in runs[0].rglob("*")}
    assert any(f.endswith(".wandb") for f in files)
    assert (tmp_path / "r" / paths.SUMMARY).is_file()


def test_broken_wandb_never_fails_a_run(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "not-a-mode")
    s = run(load(tiny), tmp_path / "r")
    assert s["status"] == "ok"


def test_bench_prints_ratio_last(capsys):
    assert cli.main(["bench", "--steps", "30", "--depth", "3", "--width", "16"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("instrumented/bare steps-per-second ratio: ")
    assert float(last.rsplit(" ", 1)[1]) > 0


def test_progress_rate_and_eta_count_the_recent_steps_not_the_setup():
    """Setup took 10 s before step 1, then 100 steps/s: the line must say 100 steps/s and the
    steps left / 100 as ETA. A rate since the start said 1 steps/s, ETA 413 s for a 3 s run."""
    import io
    from vgbench.train import Progress
    import torch
    t = iter([10.0, 11.0, 11.1, 12.0, 13.0])
    buf = io.StringIO()
    p = Progress(buf, clock=lambda: next(t))
    losses = torch.full((1000,), 2.0)
    p.update(1, losses, 1000)      # t = 10: no rate yet
    p.update(101, losses, 1000)    # t = 11: 100 steps in 1 s
    p.update(105, losses, 1000)    # t = 11.1: within 0.25 s of the last update, not shown
    p.update(201, losses, 1000)    # t = 12: 100 more in 1 s
    p.update(1000, losses, 1000)   # t = 13: 799 in 1 s, smoothed: (100 + 799) / 2
    shown = [x.strip() for x in buf.getvalue().split("\r") if x]
    assert shown == ["step 1/1000  loss 2  -- steps/s  ETA -- s", "step 101/1000  loss 2  100 steps/s  ETA 9 s",
                     "step 201/1000  loss 2  100 steps/s  ETA 8 s", "step 1000/1000  loss 2  450 steps/s  ETA 0 s"]


def test_progress_line_on_a_terminal_only(tmp_path, tiny):
    import io
    buf = io.StringIO()
    run(load({**tiny, "steps": 30}), tmp_path / "a", progress=buf)
    text = buf.getvalue()
    assert "step 30/30" in text and "steps/s" in text and "ETA" in text and text.endswith("\n")
    # the CLI passes a stream only when stderr is a terminal: under pytest it is not
    import subprocess, sys
    from conftest import REPO
    p = subprocess.run([sys.executable, "-m", "vgbench", "train", "--set", "steps=5", "--set", "depth=2",
                        "--set", "width=8", "--out", str(tmp_path / "b")], capture_output=True, text=True,
                       cwd=REPO, env={**__import__("os").environ, "WANDB_MODE": "offline"})
    assert p.returncode == 0 and "steps/s" not in p.stderr and "ETA" not in p.stderr
    # a user's default (offline tracking) prints nothing but the result: wandb's deprecation
    # warning for Lightning's anonymous=None appeared on every run
    assert "WARNING" not in p.stderr and list((tmp_path / "b/wandb").glob("offline-run-*")), p.stderr


def test_status_counts_complete_missing_and_diverged(tmp_path, capsys):
    from conftest import REPO
    from vgbench import grid, status
    prof = grid.load_profile(REPO / "configs/smoke.yaml")
    spec = next(s for s in grid.final_specs(prof, {}) if s.study == "explosion")
    d = paths.run_dir(spec.run_id, tmp_path)
    d.mkdir(parents=True)
    (d / paths.SUMMARY).write_text(json.dumps({"status": "diverged", "wall_s": 60.0}))
    r = {(x["study"], x["stage"]): x for x in status.rows(prof, str(tmp_path))}
    ex = r[("explosion", "final")]
    assert (ex["complete"], ex["missing"], ex["diverged"], ex["runs"]) == (1, 3, 1, 4)
    assert cli.main(["status", str(REPO / "configs/smoke.yaml"), "--results", str(tmp_path), "--cores", "1"]) == 0
    out = capsys.readouterr().out
    assert "explosion" in out and "~3.0 min" in out   # 3 missing x 60 s on 1 core


def test_status_estimates_a_stage_without_runs_from_the_other_stage(tmp_path, capsys):
    """Before any final run exists, its time is its steps x the study's seconds per step in tuning."""
    from conftest import REPO
    from vgbench import grid, status
    prof = grid.load_profile(REPO / "configs/smoke.yaml")
    tune = [s for s in grid.tune_specs(prof) if s.study == "mlp_mitigations"]
    d = paths.run_dir(tune[0].run_id, tmp_path)
    d.mkdir(parents=True)
    (d / paths.SUMMARY).write_text(json.dumps({"status": "ok", "wall_s": 2.0 * tune[0].cfg.steps}))  # 2 s/step
    r = {(x["study"], x["stage"]): x for x in status.rows(prof, str(tmp_path))}
    fin = r[("mlp_mitigations", "final")]
    steps = sum(s.cfg.steps for s in grid.final_specs(prof, {}) if s.study == "mlp_mitigations")
    assert fin["complete"] == 0 and fin["from_other_stage"] and fin["estimate_s"] == pytest.approx(2.0 * steps)
    # no run of that study anywhere: the cost model, with a per-run overhead (a 0-step run is not free)
    ex = r[("explosion", "final")]
    from vgbench.config import estimate_seconds
    specs = [s for s in grid.final_specs(prof, {}) if s.study == "explosion"]
    assert ex["from_model"] and not fin.get("from_model")
    assert ex["estimate_s"] == pytest.approx(sum(0.4 + estimate_seconds(s.cfg) for s in specs))
    assert cli.main(["status", str(REPO / "configs/smoke.yaml"), "--results", str(tmp_path), "--cores", "1"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("explosion"))
    assert line.endswith(f"~{ex['estimate_s'] / 60:.1f} min (cost model)") and "?" not in out
    assert "cost model, fitted on one machine" in out.splitlines()[-1]


def test_status_lists_a_tuned_study_added_since_the_lr_selection_as_waiting(tmp_path, capsys):
    """A study added to a profile after its tune stage ran (a new replication round) has no
    selected lr yet: status listed nothing and stopped ("no selected lr for ..."); it lists that
    study's final runs as waiting for their lr and every other study's with its selected lr."""
    from conftest import REPO
    from vgbench import grid, status
    prof = grid.load_profile(REPO / "configs/smoke.yaml")
    keys = {s.tune_key: s.study for s in grid.tune_specs(prof)}
    old = {k: 0.1 for k, st in keys.items() if st != "cnn_resnet"}   # selected before cnn_resnet existed
    f = paths.selected_lr(tmp_path)
    f.parent.mkdir(parents=True)
    pd.DataFrame({"tune_key": list(old), "lr": list(old.values()), "selected": True}).to_csv(f, index=False)
    r = {(x["study"], x["stage"]): x for x in status.rows(prof, str(tmp_path))}
    assert r[("cnn_resnet", "final")]["waiting_for_lr"]
    assert not any(x["waiting_for_lr"] for (st, stage), x in r.items() if st != "cnn_resnet")
    n_cnn = sum(1 for s in grid.final_specs(prof, {}) if s.study == "cnn_resnet")
    assert r[("cnn_resnet", "final")]["runs"] == n_cnn
    fin = grid.final_specs(prof, old, partial=True)   # the pipeline's listing leaves it out instead
    assert "cnn_resnet" not in {s.study for s in fin}
    assert all(s.cfg.lr == 0.1 for s in fin if s.study in set(keys.values()))
    assert cli.main(["status", str(REPO / "configs/smoke.yaml"), "--results", str(tmp_path)]) == 0
    out = [x for x in capsys.readouterr().out.splitlines() if "lr not selected yet" in x]
    assert len(out) == 1 and out[0].startswith("cnn_resnet") and "final" in out[0]


def test_status_names_the_commits_when_runs_were_trained_by_different_code(tmp_path, capsys):
    """A run id hashes the config, not the code: results resumed across commits must say so."""
    from conftest import REPO
    from vgbench import grid
    prof = grid.load_profile(REPO / "configs/smoke.yaml")
    specs = [s for s in grid.final_specs(prof, {}) if s.study == "explosion"][:3]
    for spec, commit, cap in zip(specs, ["a" * 40, "a" * 40, "a" * 40 + "-dirty"], ["AVX2", "AVX512", "AVX2"]):
        d = paths.run_dir(spec.run_id, tmp_path)
        d.mkdir(parents=True)
        (d / paths.SUMMARY).write_text(json.dumps({"status": "ok", "wall_s": 1.0}))
        (d / "config.json").write_text(json.dumps({"commit": commit, "config": {}, "run_id": spec.run_id,
                                                   "platform": {"cpu_capability": cap}}))
    assert cli.main(["status", str(REPO / "configs/smoke.yaml"), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "aaaaaaaaaa (2), aaaaaaaaaa-dirty (1)" in out
    # runs from CPUs whose kernels round differently (a cluster's mixed nodes) are not bit-comparable
    assert "trained with torch's AVX2 (2), AVX512 (1) CPU kernels" in out


def test_train_reruns_a_run_directory_from_its_recorded_config(tmp_path):
    """A run's config.json (with commit, run id, versions around the config) is a valid input."""
    from vgbench import config
    cfg = config.load({"model": "mlp", "depth": 3, "width": 8, "steps": 7, "lr": 0.3})
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"commit": "x", "config": cfg.to_dict(), "run_id": "r",
                                               "config_hash": "h", "versions": {}}))
    for src in (d, d / "config.json"):
        again = config.from_file(src, ["seed=3"])
        assert again.to_dict() == {**cfg.to_dict(), "seed": 3}


def test_weight_norm_is_the_l2_norm_of_all_parameters(tmp_path, tiny):
    """The recorded weight norm against numpy's norm of the same model's parameters, built from
    the same seed; and it grows where the shallow ReLU blows up."""
    import numpy as np
    import pytorch_lightning as pl

    from vgbench.data import load_task
    from vgbench.models import build_model
    cfg = load({**tiny, "steps": 0})
    s = run(cfg, tmp_path / "r")
    pl.seed_everything(cfg.seed, verbose=False)
    net = build_model(cfg, load_task(cfg))
    ref = np.sqrt(sum(float((p.detach().double().numpy() ** 2).sum()) for p in net.parameters()))
    assert s["weight_norm_init"] == pytest.approx(ref, rel=1e-6)
    assert s["weight_norm_final"] == pytest.approx(ref, rel=1e-6)
    m = pd.read_csv(tmp_path / "r" / paths.METRICS)
    assert m.loc[m.metric == "weight_norm", "value"].tolist() == pytest.approx([ref], rel=1e-6)

    s = run(load({**tiny, "steps": 40, "activation": "relu", "lr": 3.0, "depth": 1}), tmp_path / "g")
    m = pd.read_csv(tmp_path / "g" / paths.METRICS)
    w = m.loc[m.metric == "weight_norm"].sort_values("step")
    assert w.step.iloc[0] == 0 and w.value.iloc[0] == pytest.approx(s["weight_norm_init"])
    assert w.value.dropna().iloc[-1] > 1.5 * w.value.iloc[0]


@pytest.mark.parametrize("extra", [{}, {"activation": "relu", "lr": 50.0, "width": 30, "depth": 1}])
def test_lightning_chunk_size_does_not_change_a_run(tmp_path, tiny, monkeypatch, extra):
    """Lightning hands training_step chunks of steps (train.Chunks); the chunk length is a cost
    knob only: 1 (Lightning's own step per training step), 7 (does not divide the steps) and 50
    give the same metrics, gradients and summary, also for a run that diverges mid-chunk.
    46 steps of batch 50 on mnist1d's 4000 training examples cross no epoch; 160 steps (two
    epochs) are checked for the data order across the reshuffle."""
    from vgbench import train
    cfg = load({**tiny, "steps": 160, "eval_every": 40, **extra})
    outs = []
    for k in (1, 7, 50):
        monkeypatch.setattr(train.Chunks, "CHUNK", k)
        s = run(cfg, tmp_path / f"k{k}")
        for key in ("wall_s", "train_s", "setup_s", "run_id"):
            s.pop(key)
        outs.append((s, (tmp_path / f"k{k}" / paths.METRICS).read_text(),
                     pd.read_parquet(tmp_path / f"k{k}" / paths.GRADIENTS)))
    for s, m, g in outs[1:]:
        assert s == outs[0][0] and m == outs[0][1]
        pd.testing.assert_frame_equal(g, outs[0][2])
    s = outs[0][0]
    assert (s["status"], s["steps"]) == (("diverged", s["diverged_at_step"]) if extra else ("ok", 160))


def test_final_measurement_batch_follows_the_training_stream(tmp_path, tiny, monkeypatch):
    """The batch of the last gradient measurement is drawn after training from the same seeded
    generator; the training stream has drawn steps + 1 batches by then (the one more batch
    Lightning prefetched when it was handed single batches), so a run's final measurement -- and
    every run id's results -- are the same as before training was chunked."""
    from vgbench import train
    drawn = []

    class Counting(train.Batches):
        def __iter__(self):
            drawn.append(0)
            i = len(drawn) - 1
            for b in super().__iter__():
                drawn[i] += 1
                yield b

    monkeypatch.setattr(train, "Batches", Counting)
    run(load({**tiny, "steps": 80}), tmp_path / "r")  # 80 batches of 50 = one epoch of 4000
    assert drawn == [81, 1]
