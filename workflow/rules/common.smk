# Shared state of the workflow: the profile, the results folder, the job markers.
import functools
import os
import shlex
import subprocess
import sys
from pathlib import Path

from vgbench import grid, paths, power, provenance
from vgbench.select_lr import read_selected

def _dry_run() -> bool:
    """Whether this invocation is a dry run (-n, --dry-run, or -n in a bundle of short flags such
    as -np). workflow.dryrun cannot tell while the Snakefile is parsed: Snakemake 9 knows it only
    once the executor is chosen, after the DAG -- it read False here, and a dry run deleted the
    stale job markers and aggregates that it claimed only to report."""
    for a in sys.argv[1:]:
        if a in ("-n", "--dry-run", "--dryrun") or (a[:1] == "-" and a[1:2] != "-" and a[1:].isalpha() and "n" in a):
            return True
    return workflow.dryrun


DRY = _dry_run()
# what a dry run cannot show: the jobs it would redo because of the files it leaves in place
DRY_NOTE = " (a dry run changes nothing, so Snakemake's job list below leaves this out)"
PROFILE = str((workflow.overwrite_configfiles or [os.path.join(workflow.basedir, "configs/default.yaml")])[-1])
PROF = grid.load_profile(PROFILE)  # validates every run before any job starts
if workflow.is_main_process and (_weak := power.warning(PROF, PROFILE)):
    print(_weak, file=sys.stderr)  # before the runs, so a pre-registration can still add seeds
R = paths.results_folder(config.get("results", "results"))
VG = f"{shlex.quote(sys.executable)} -m vgbench"  # the Python that runs Snakemake has vgbench installed
ENV = "../envs/vgbench.yaml"
TUNED = any(s.lr_grid for s in PROF.studies.values())
SELECTED = str(paths.selected_lr(R))
AGGREGATES = [str(paths.aggregate(n, R)) for n in paths.AGGREGATES]
THEORY = str(paths.stats(paths.THEORY, R))
TUNE_JOBS = grid.jobs(grid.tune_specs(PROF))


def results_of(output):
    """The results folder an output lies in (every output is R/<stage dir>/...)."""
    out = Path(output).resolve()
    return str(next(p for p in out.parents if p == Path(R).resolve()))


def marker(stage, job):
    return str(paths.job_marker(stage, job, R))


def sweep(stage, jobs, downstream):
    """Before the DAG is built: a job marker whose job has a run without summary.json
    (deleted, interrupted, or new after an axis change) is stale and removed, so
    Snakemake reruns that job, which trains only the missing runs. If any marker is
    missing, the `downstream` files summarised an older run set and are removed too:
    Snakemake never rebuilds a missing intermediate file under an up-to-date output.
    A dry run only reports."""
    stale, new = [], []
    for job, specs in jobs.items():
        m = Path(marker(stage, job))
        if not m.exists():
            new.append(job)
        elif not all(paths.is_complete(paths.run_dir(s.run_id, R)) for s in specs):
            stale.append(job)
            if not DRY:
                m.unlink()
    if stale:
        print(f"vgbench: {len(stale)} {stage} job(s) have missing runs and will resume: "
              f"{', '.join(stale[:5])}{DRY_NOTE if DRY else ''}", file=sys.stderr)
    if new and DRY and any(Path(f).exists() for f in downstream):
        # a folder whose analysis exists (copied, or grown by a study) but without Snakemake's records
        # (.snakemake/): the dry run's job list then says "Nothing to be done", the run does not
        print(f"vgbench: {len(new)} {stage} job(s) not run yet in this results folder, to run with "
              f"every stage after them: {', '.join(new[:5])}{', ...' if len(new) > 5 else ''}", file=sys.stderr)
    if (stale or new) and not DRY:
        for f in downstream:
            Path(f).unlink(missing_ok=True)


def stamp_code():
    """The analysis stages (aggregate and everything after it) depend on the package's code, not
    only on the runs: results/aggregate/code.sha256 holds the hash of the code they last ran with,
    rewritten here when it differs, so a changed evaluator or figure recomputes them (its mtime
    is the one rerun trigger this workflow uses). Training jobs do not read it: runs are keyed
    by their config and never retrained for a code change. A dry run only reports."""
    stamp = paths.code_stamp(R)
    # the package the stages import (`python -m vgbench` in this directory and environment), which
    # need not be the one this Snakefile imported: Snakemake puts the workflow's folder on sys.path
    p = subprocess.run([sys.executable, "-c", "from vgbench.provenance import code_hash; print(code_hash())"],
                       capture_output=True, text=True)
    h = p.stdout.strip() if p.returncode == 0 else provenance.code_hash()   # a stage would fail louder
    old = stamp.read_text().strip() if stamp.is_file() else None
    if old == h:
        return
    if old is not None:
        print("vgbench: the vgbench code changed since the analysis last ran: aggregate and every later "
              f"stage will run again{DRY_NOTE if DRY else ''}", file=sys.stderr)
    if not DRY:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        with provenance.atomic_write(stamp) as tmp:
            tmp.write_text(h + "\n")


if workflow.is_main_process:
    stamp_code()
CODE_STAMP = str(paths.code_stamp(R))


# final first: a stale tune job removes the selection the final jobs are read from, and final runs
# missing beside it were then left to a second invocation (aggregate stopped at them in between).
# partial: a tuned study added to the profile since the selection was made has no lr in it yet (its
# tune jobs are new, so the tune sweep below removes the selection); the dry run and the run stopped
# at "no selected lr ... run the tune stage first" instead of tuning it
if not TUNED or Path(SELECTED).exists():
    sweep("final", grid.jobs(grid.final_specs(PROF, read_selected(SELECTED) if TUNED else {}, partial=True)),
          AGGREGATES)
sweep("tune", TUNE_JOBS, [SELECTED, *AGGREGATES])


def final_jobs():
    """Final-stage jobs, known once select_lr (a checkpoint) has run."""
    selected = read_selected(checkpoints.select_lr.get().output[0]) if TUNED else {}
    if DRY and TUNED and (new := grid.unselected(PROF, selected)):
        # the selection predates a tuned study: a real run removes it in the tune sweep (the study's
        # tune jobs are new) and selects again; a dry run left it, so it can list only the others
        print(f"vgbench: {len(new)} tuned condition(s) added since the lrs were selected (e.g. {new[0]}): "
              f"their tune jobs run first, then select_lr, then their final jobs, which a dry run "
              f"cannot list yet", file=sys.stderr)
        return grid.jobs(grid.final_specs(PROF, selected, partial=True))
    return grid.jobs(grid.final_specs(PROF, selected))


@functools.cache
def job_costs(stage):
    """Estimated seconds of each job's runs (computed once per stage; the final stage's once
    select_lr has run)."""
    return grid.job_seconds(TUNE_JOBS if stage == "tune" else final_jobs())


def job_priority(stage, job):
    """Longest jobs first: Snakemake starts the job with the highest priority among the ready
    ones, and a long job started last leaves the other cores idle at the end (the default
    profile's GRU job ran alone for its last 7 minutes). 0 where the costs are not known yet: a
    final job asked for by its marker before the LR selection exists (Snakemake refused a None)."""
    from snakemake.exceptions import IncompleteCheckpointException
    try:
        return job_costs(stage).get(job, 0)
    except IncompleteCheckpointException:
        return 0
