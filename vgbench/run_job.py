"""`vgbench run-job`: train every missing run of one Snakemake job in one process.

A job is (stage, study, variant): its runs (axis values x seeds, and x lr_grid when
tuning) share one Python process, so the 5 s import of torch + Lightning is paid once
per job rather than once per run, while each run still writes its own run directory.
Complete runs (summary.json present) are skipped, so a rerun after an interruption
trains only what is missing. The job's marker (a JSON list of its runs and their
status) is written last; it is the Snakemake output.
"""
from __future__ import annotations

import json
import resource
import time

from vgbench import grid, paths
from vgbench.config import ConfigError


def specs_for(profile: grid.Profile, stage: str, job: str, selected_csv: str | None) -> list[grid.RunSpec]:
    if stage == "tune":
        specs = grid.tune_specs(profile)
    else:
        from vgbench.select_lr import read_selected
        specs = grid.final_specs(profile, read_selected(selected_csv) if selected_csv else {})
    mine = [s for s in specs if s.job == job]
    if not mine:
        raise ConfigError(f"no runs for job '{job}' in profile {profile.path} (stage {stage})")
    return mine


def main(args) -> int:
    profile = grid.load_profile(args.profile)
    specs = specs_for(profile, args.stage, args.job, args.selected)
    from vgbench.provenance import write_json_atomic
    t_imp = time.process_time()
    from vgbench.train import run
    import_s = time.process_time() - t_imp   # CPU seconds, like cpu_s
    t0 = time.perf_counter()
    done, trained, runs_wall, runs_cpu = [], 0, 0.0, 0.0
    for spec in specs:
        out = paths.run_dir(spec.run_id, args.results)
        if not paths.is_complete(out):
            c0 = time.process_time()
            s = run(spec.cfg, out, tags=(spec.study, spec.stage, spec.variant))
            runs_cpu += time.process_time() - c0
            trained += 1
            runs_wall += s["wall_s"]
            print(f"{spec.run_id}: {s['status']} ({s['wall_s']:.1f} s)", flush=True)
        summary = json.loads((out / paths.SUMMARY).read_text())
        done.append({"run_id": spec.run_id, "status": summary["status"]})
    marker = paths.job_marker(args.stage, args.job, args.results)
    marker.parent.mkdir(parents=True, exist_ok=True)
    # where this process's time went (the reproducibility appendix: training vs overhead):
    # CPU seconds of the whole process (interpreter start and imports included), the import of
    # the training stack, and the wall and CPU seconds of the runs it trained (on a busy machine a
    # run's wall time includes waiting for a core, so shares of CPU time use the runs' CPU seconds)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    write_json_atomic(marker, {"job": args.job, "stage": args.stage, "profile": profile.name,
                               "profile_hash": profile.hash, "runs": done,
                               "process": {"cpu_s": usage.ru_utime + usage.ru_stime, "import_s": import_s,
                                           "trained": trained, "runs_wall_s": runs_wall,
                                           "runs_cpu_s": runs_cpu}})
    print(f"job {args.job}: {len(specs)} runs, {trained} trained, {len(specs) - trained} already complete, "
          f"{time.perf_counter() - t0:.1f} s")
    return 0
