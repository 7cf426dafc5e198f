"""The Snakemake pipeline: dry runs of every profile, the smoke profile end to end in a
temporary directory, resume after a lost run, and bad profiles failing before any job."""
import json
import re
import shutil
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as st

from vgbench import grid, paths

from conftest import REPO, executed, snake


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_dry_run_every_profile(tmp_path, profile):
    p = snake(tmp_path, "-n", "--configfile", str(REPO / f"configs/{profile}.yaml"))
    text = p.stdout + p.stderr
    assert "tune_job" in text and "not run yet in this results folder" not in text   # Snakemake lists them
    if profile == "smoke":  # exactly the smoke profile's tune jobs: none inherited from the default profile
        want = set(grid.jobs(grid.tune_specs(grid.load_profile(REPO / "configs/smoke.yaml"))))
        assert want and set(re.findall(r"job=(tune-[\w-]+)", text)) == want


def test_bad_profile_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"profile": "bad", "studies": {"x": {
        "base": {"depth": 2, "steps": 2}, "axes": {"activation": ["relu", "swish"]}}}}))
    p = snake(tmp_path, "--configfile", str(bad), check=False)
    assert p.returncode != 0
    assert "study 'x'" in p.stderr and "swish" in p.stderr
    assert not (tmp_path / "results").exists()


def test_smoke_pipeline_end_to_end(smoke):
    work, p = smoke
    res = work / "results"
    runs = pd.read_parquet(res / "aggregate/runs.parquet")
    curves = pd.read_parquet(res / "aggregate/curves.parquet")
    sel = pd.read_csv(res / "tuning/selected_lr.csv")
    assert set(runs.study) == set(yaml.safe_load((REPO / "configs/smoke.yaml").read_text())["studies"])
    assert set(runs.stage) == {"tune", "final"}
    assert runs.groupby("tune_key").size().min() >= 2
    assert sel.groupby("tune_key")["selected"].sum().eq(1).all()
    fin = runs[runs.stage == "final"]
    # final runs of tuned studies use the selected lr
    tuned = fin[fin.tune_key.isin(sel.tune_key)]
    chosen = sel[sel.selected].set_index("tune_key")["lr"]
    assert (tuned.lr.values == chosen.loc[tuned.tune_key].values).all()
    assert set(curves.run_id.unique()) == set(fin.run_id)
    assert {"weight_grad", "signal", "metric"} <= set(curves.kind.unique())
    # the cost accounting: every job's marker records its process; the paper's numbers are their sums
    markers = [json.loads(m.read_text()) for m in (res / "jobs").rglob("*.json")]
    assert markers and all(m["process"]["cpu_s"] > m["process"]["import_s"] > 0 for m in markers)
    walls = sum(m["process"]["runs_wall_s"] for m in markers)
    assert walls == pytest.approx(runs.wall_s.sum(), rel=1e-6)   # every run trained once, counted once
    trained = sum(m["process"]["runs_cpu_s"] for m in markers)
    cpu = sum(m["process"]["cpu_s"] for m in markers)
    assert 0 < trained < cpu            # the runs' CPU time is part of their processes' CPU time
    nums = (res / "tables/numbers.tex").read_text()
    assert f"\\providecommand{{\\vgJobCoreHours}}{{{cpu / 3600:.2f}}}" in nums
    assert f"\\providecommand{{\\vgTrainingShare}}{{{100 * trained / cpu:.0f}}}" in nums
    # every run says which CPU kernels rounded its numbers, and the paper counts them
    import torch
    cap = torch.backends.cpu.get_cpu_capability()
    assert (runs.cpu_capability == cap).all()
    assert f"\\providecommand{{\\vgKernels}}{{{cap} ({len(runs)})}}" in nums
    assert "final runs" in (res / "logs/aggregate.log").read_text() or "runs found" in (res / "logs/aggregate.log").read_text()


def test_jobs_start_longest_first(smoke):
    """Every job of a stage is ready at once; Snakemake starts them in the order of their priority,
    the estimated seconds of their runs (config.estimate_seconds), so the longest do not run last
    on an otherwise idle machine. A priority that is ignored or inverted fails this (checked: without
    the rules' `priority` the smoke tune job estimated 0.013 s started in the first round, the
    0.169 s one after it)."""
    from vgbench.select_lr import read_selected
    work, p = smoke
    prof = grid.load_profile(REPO / "configs/smoke.yaml")
    started = re.findall(r"wildcards: job=((?:tune|final)-\S+)", p.stdout + p.stderr)
    final = grid.final_specs(prof, read_selected(work / "results/tuning/selected_lr.csv"))
    for stage, specs in (("tune", grid.tune_specs(prof)), ("final", final)):
        cost = grid.job_seconds(grid.jobs(specs))
        # jobs whose estimates differ only by float rounding (1e-17) are ties: either may start first
        order = [round(cost[j], 9) for j in started if j.startswith(stage + "-")]
        assert len(order) == len(cost) > 3 and max(order) > 2 * min(order)
        # the first round starts one job per core (2) in no particular order; then one at a time
        assert min(order[:2]) >= max(order[2:]) and order[2:] == sorted(order[2:], reverse=True), stage


def test_resume_runs_exactly_the_missing_run(smoke, tmp_path):
    # on a copy (file times kept): the other tests read the smoke results and its manifest unchanged
    work = tmp_path / "work"
    shutil.copytree(smoke[0], work, symlinks=True)
    res = work / "results"
    victim = next(p for p in sorted((res / "runs").glob("mlp_mitigations-*")) if (p / "summary.json").exists())
    other = sorted((res / "runs").glob("*/summary.json"))
    mtimes = {str(p): p.stat().st_mtime_ns for p in other if p.parent != victim}
    (victim / "summary.json").unlink()
    # up to the aggregate: what a resume must redo is training; the rules after it are tested above
    target = "results/aggregate/runs.parquet"
    # a dry run reports the resume and touches nothing (it once deleted the stale marker and the
    # aggregates: workflow.dryrun reads False while Snakemake parses the workflow)
    before = sorted(str(f.relative_to(res)) for f in res.rglob("*") if f.is_file())
    dry = snake(work, target, "-n", "--configfile", str(REPO / "configs/smoke.yaml"))
    assert "1 final job(s) have missing runs and will resume: final-mlp_mitigations (a dry run changes nothing" \
        in dry.stderr
    assert sorted(str(f.relative_to(res)) for f in res.rglob("*") if f.is_file()) == before
    p = snake(work, target, "--configfile", str(REPO / "configs/smoke.yaml"))   # target first: --configfile takes a list
    assert executed(p, "train_job") == 1 and executed(p, "tune_job") == 0
    assert (victim / "summary.json").is_file()
    assert all(Path(f).stat().st_mtime_ns == t for f, t in mtimes.items())   # nothing else retrained
    log = (res / "logs/final/final-mlp_mitigations.log").read_text()
    assert "1 trained" in log
    again = snake(work, target, "--configfile", str(REPO / "configs/smoke.yaml"))
    assert "Nothing to be done" in again.stdout + again.stderr
    # the analysis depends on the package's code: the same code in another folder changes nothing;
    # an edited evaluator runs the analysis again on the same runs, and nothing is retrained
    from vgbench import provenance
    stamp = paths.code_stamp(res)
    assert stamp.read_text().strip() == provenance.code_hash()
    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / "vgbench", pkg / "vgbench", ignore=shutil.ignore_patterns("__pycache__"))
    same = snake(work, target, "--configfile", str(REPO / "configs/smoke.yaml"), package_root=pkg, cwd=work)
    assert "Nothing to be done" in same.stdout + same.stderr
    with open(pkg / "vgbench/claims.py", "a") as f:
        f.write("# an edit\n")
    code = snake(work, target, "--configfile", str(REPO / "configs/smoke.yaml"), package_root=pkg, cwd=work)
    assert "the vgbench code changed since the analysis last ran" in code.stderr
    assert executed(code, "aggregate") == 1 and executed(code, "train_job") == executed(code, "tune_job") == 0
    assert stamp.read_text().strip() == provenance.code_hash(pkg / "vgbench") != provenance.code_hash()


def test_missing_tune_and_final_runs_resume_in_one_invocation(smoke, tmp_path):
    """A tune run and a final run lost together (a rerun after the norm fix deleted both kinds):
    the tune sweep removed the LR selection the final sweep reads, the final sweep was skipped, and
    aggregate stopped at the missing final run until the command was run a second time."""
    work = tmp_path / "work"
    shutil.copytree(smoke[0], work, symlinks=True)
    res = work / "results"
    tune = next(p for p in sorted((res / "runs").glob("tune-*")) if (p / "summary.json").exists())
    final = next(p for p in sorted((res / "runs").glob("explosion-*")) if (p / "summary.json").exists())
    for v in (tune, final):
        (v / "summary.json").unlink()
    # the explosion job's marker as the target: the sweeps run for any target, and this one asks for
    # no more than the two jobs (the whole aggregate would rerun every final job in the smoke profile)
    p = snake(work, "results/jobs/final/final-explosion.json", "--configfile", str(REPO / "configs/smoke.yaml"))
    # the final sweep ran in this invocation (in the smoke profile the new selection happens to rerun
    # every final job anyway; in the default it did not, and aggregate failed)
    assert "1 final job(s) have missing runs and will resume" in p.stderr
    assert "1 tune job(s) have missing runs and will resume" in p.stderr
    assert (tune / "summary.json").is_file() and (final / "summary.json").is_file()


def test_aggregate_fails_loudly_on_missing_run(smoke, tmp_path):
    from vgbench import cli
    work, _ = smoke
    res = work / "results"
    victim = next(iter(sorted((res / "runs").glob("explosion-*"))))
    s = victim / "summary.json"
    saved = s.read_text()
    s.unlink()
    try:
        code = cli.main(["aggregate", str(REPO / "configs/smoke.yaml"), "--results", str(res)])
        assert code == 1
    finally:
        s.write_text(saved)


def test_smoke_analysis_outputs_exist_and_parse(smoke):
    from vgbench.figures import NAMES as FIGS
    from vgbench.tables import NAMES as TABS
    work, _ = smoke
    res = work / "results"
    for n in ("conditions", "comparisons", "friedman", "ranks", "claims", "theory"):
        assert len(pd.read_csv(res / "stats" / f"{n}.csv")) > 0, n
    claims = pd.read_csv(res / "stats/claims.csv").set_index("id")
    prof = grid.load_profile(REPO / "configs/smoke.yaml")
    assert list(claims.index) == [c.id for c in prof.claims]
    # two claims recomputed by hand from runs.parquet (not from the stats code)
    runs = pd.read_parquet(res / "aggregate/runs.parquet")
    runs = runs[runs.stage == "final"]
    sig = runs[(runs.study == "init_depth") & (runs.activation == "sigmoid") & (runs.init == "default")]
    assert claims.loc["sigmoid_vanishes", "effect"] == pytest.approx(-np.log10(sig.grad_ratio_init).mean())
    assert claims.loc["sigmoid_vanishes", "verdict"] == "supported"   # 12 sigmoid layers: ~1e-10
    # 60 sigmoid layers underflow float32 (ratio 0); the float64 copy's ratio (~1e-52) is the outcome
    f64 = runs[runs.study == "sigmoid_init_f64"]
    assert len(f64) == 2 and (f64.grad_ratio_init == 0).all()
    assert (f64.grad_ratio_init_f64 > 0).all() and (f64.grad_ratio_init_f64 < 1e-40).all()
    assert claims.loc["sigmoid_vanishes_f64", "effect"] == pytest.approx(-np.log10(f64.grad_ratio_init_f64).mean())
    mlp = runs[(runs.study == "mlp_mitigations") & (runs.depth == 6)].set_index(["variant", "seed"])["final.test/acc"]
    d = (mlp.loc["batch_norm"] - mlp.loc["baseline"]).to_numpy()
    assert claims.loc["batch_norm_helps", "effect"] == pytest.approx(d.mean())
    assert claims.loc["batch_norm_helps", "p"] == pytest.approx(st.ttest_rel(mlp.loc["batch_norm"],
                                                                               mlp.loc["baseline"]).pvalue,
                                                                  rel=1e-6, abs=0)
    assert claims.loc["batch_norm_helps", "ci_low"] < claims.loc["batch_norm_helps", "ci_high"]
    for n in FIGS:
        assert (res / "figures" / f"{n}.pdf").stat().st_size > 1000, n
        assert (res / "figures" / f"{n}.png").read_bytes()[:4] == b"\x89PNG", n
    for n in TABS:
        text = (res / "tables" / f"{n}.tex").read_text()
        assert ((r"\begin{tabular}" in text and r"\bottomrule" in text) or (n == "numbers" and r"\providecommand" in text)
                or (n == "answers" and text.count(r"\subsection*") == len(prof.questions))), n


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (CI installs it)")
def test_tables_compile_in_a_minimal_document(smoke, tmp_path):
    from vgbench.tables import NAMES as TABS
    work, _ = smoke
    shutil.copytree(work / "results/tables", tmp_path / "tables")   # (the smoke folder's path has a '#')
    body = "\n".join(rf"\input{{tables/{n}.tex}}" for n in TABS)
    (tmp_path / "t.tex").write_text("\\documentclass{article}\\usepackage[T1]{fontenc}\\usepackage{booktabs,graphicx,array}\n"
                                    f"\\begin{{document}}\n{body}\n\\vgNumRuns\n\\end{{document}}\n")
    p = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-2000:]


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (CI installs it)")
def test_paper_has_every_figure_and_table(smoke):
    from vgbench.figures import NAMES as FIGS
    work, _ = smoke
    pdf = work / "paper/vgbench.pdf"
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    n_fig = len(set(re.findall(r"Figure (\d+):", text)))
    n_tab = len(set(re.findall(r"Table (\d+):", text)))
    assert n_fig == len(FIGS) and n_tab == 6   # the smoke profile draws every figure
    assert "no data in this profile" not in text
    assert "declared in the profile before the runs, tested" in text
    answers = text[text.index("Answers"):text.index("Results")]
    for q in grid.load_profile(REPO / "configs/smoke.yaml").questions:
        assert q.question in " ".join(answers.replace("’", "'").split()), q.question   # LaTeX typesets ' as ’
    assert "Supported: Sigmoid nets' gradients vanish with depth" in " ".join(answers.replace("’", "'").split())


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (CI installs it)")
def test_a_figure_without_data_in_the_profile_is_left_out_of_the_paper_with_its_paragraph(smoke, tmp_path):
    """A profile without a study a figure draws got a page of "no data in this profile" panels and
    a paragraph of dashes about them (the replication profile's paper: 14 pages, 10 of its 14
    figures blank)."""
    import importlib
    from vgbench import cli
    from vgbench.figures import NAMES as FIGS, style
    from vgbench.provenance import blank_in
    work, _ = smoke
    res = tmp_path / "results"
    shutil.copytree(work / "results", res, ignore=shutil.ignore_patterns("runs", "wandb", "paper_build"))
    style.apply()
    blank = importlib.import_module("vgbench.figures.phase_diagram").make(
        {k: pd.DataFrame() for k in ("runs", "curves", "conditions", "theory")})
    assert style.is_blank(blank)
    style.save(blank, str(res / "figures/phase_diagram"), {"figure": "phase_diagram"})
    assert blank_in(res / "figures/phase_diagram.png")
    assert not blank_in(res / "figures/exploding.png")
    out = tmp_path / "p.pdf"
    assert cli.main(["paper", str(REPO / "configs/smoke.yaml"), "--results", str(res), "--out", str(out)]) == 0
    text = " ".join(subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True).stdout.split())
    assert len(set(re.findall(r"Figure (\d+):", text))) == len(FIGS) - 1
    assert "no data in this profile" not in text and "Where depth stops being trainable" not in text
    assert "Exploding gradients" in text and "This profile's studies draw none" not in text


def test_manifest_verify_passes_then_names_the_modified_file(smoke, capsys):
    from vgbench import cli
    work, _ = smoke
    man = work / "results/MANIFEST.json"
    m = json.loads(man.read_text())
    assert m["profile"] == "smoke" and m["n_files"] > 100
    assert {e["rule"] for e in m["files"]} >= {"aggregate", "compute_stats", "plot_exploding", "write_claims"}
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert cli.main(["verify", "results/MANIFEST.json"]) == 0
        # only the profile's runs are listed: a run directory left from an older profile is not
        from vgbench import grid, manifest
        orphan = work / "results/runs/orphan-run"
        orphan.mkdir()
        (orphan / "summary.json").write_text("{}")
        try:
            b = manifest.build(grid.load_profile(str(REPO / "configs/smoke.yaml")), "results", None)
        finally:
            shutil.rmtree(orphan)
        listed = {Path(e["path"]).parent.name for e in b["files"] if e["path"].startswith("results/runs/")}
        assert "orphan-run" not in listed and b["other_run_dirs_not_listed"] == 1
        assert len(listed) == b["n_runs"] == len(list((work / "results/runs").glob("*")))
        target = work / "results/tables/claims.tex"
        saved = target.read_bytes()
        target.write_bytes(saved + b"% tampered\n")
        try:
            assert cli.main(["verify", "results/MANIFEST.json"]) == 1
            assert "modified: results/tables/claims.tex" in capsys.readouterr().err
        finally:
            target.write_bytes(saved)
    finally:
        os.chdir(cwd)


def test_a_tuned_study_added_after_the_lrs_were_selected_is_tuned_then_trained(tmp_path):
    """A profile grown by a tuned study (the replication profile's third round) stopped both the dry
    run and the run at "no selected lr for <new condition>; run the tune stage first": the final
    jobs were expanded from the old lr selection before the tune sweep could remove it."""
    study = lambda steps: {"base": {"model": "mlp", "depth": 2, "width": 8, "optimizer": "sgd", "steps": steps},
                           "seeds": 2, "lr_grid": [0.1, 1.0], "tune_steps": 5}
    prof = {"profile": "grown", "description": "test", "tune_seeds": [100], "job_by": "study",
            "defaults": {"task": "mnist1d", "batch_size": 50, "record_points": 2},
            "studies": {"first": study(10)}}
    path = tmp_path / "grown.yaml"
    path.write_text(yaml.safe_dump(prof))
    target = "results/aggregate/runs.parquet"
    snake(tmp_path, target, "--configfile", str(path))
    res = tmp_path / "results"
    old = {str(p): p.stat().st_mtime_ns for p in (res / "runs").glob("*/summary.json")}
    assert len(old) == 2 * 1 + 2                        # 2 lrs x 1 tune seed, 2 final seeds
    prof["studies"]["second"] = study(7)
    path.write_text(yaml.safe_dump(prof))
    dry = snake(tmp_path, target, "-n", "--configfile", str(path))
    assert executed(dry, "tune_job") == 1          # Snakemake sees select_lr's inputs changed ...
    shutil.rmtree(tmp_path / ".snakemake/metadata")  # ... unless its records are gone (a copied folder)
    dry = snake(tmp_path, target, "-n", "--configfile", str(path))
    assert "1 tuned condition(s) added since the lrs were selected (e.g. second-" in dry.stderr
    # without the records Snakemake's own list says "Nothing to be done": the sweep names the new jobs
    assert "1 tune job(s) not run yet in this results folder, to run with every stage after them: tune-second" \
        in dry.stderr
    p = snake(tmp_path, target, "--configfile", str(path))
    assert executed(p, "tune_job") == 1 and (p.stdout + p.stderr).count("checkpoint select_lr:") == 1
    runs = pd.read_parquet(res / "aggregate/runs.parquet")
    assert sorted(runs[runs.stage == "final"].study) == ["first", "first", "second", "second"]
    assert all(Path(f).stat().st_mtime_ns == t for f, t in old.items())   # nothing retrained
