"""`vgbench status PROFILE [--results DIR]`: how far a profile's runs have got.

Per study and stage: runs complete / missing / diverged, read from the run directories
(summary.json), how many of the missing are being trained now (their lock is held), and an
estimate of the time left from the completed runs' wall times (mean wall time of the study's
complete runs x its missing runs, divided by --cores; for a stage with no complete run yet, its
training steps x the study's wall seconds per step in the other stage; for a study with no complete
run at all, vgbench's cost model, config.estimate_seconds, fitted on one machine: machines differ ~2x).
Useful while the pipeline or a cluster works through a profile; reads only, writes nothing.
"""
from __future__ import annotations


from vgbench import grid, paths
from vgbench.config import RUN_OVERHEAD_S, ConfigError, estimate_seconds
from vgbench.provenance import run_counts


def _stages(prof: grid.Profile, results: str):
    """(tuned, selected lr or None, [(stage, run specs)]) as the pipeline would run them now."""
    from vgbench.select_lr import read_selected
    sel_path = paths.selected_lr(results)
    tuned = any(s.lr_grid for s in prof.studies.values())
    selected = read_selected(str(sel_path)) if tuned and sel_path.exists() else None
    # a study added since the selection was made is listed with provisional run ids, as before any
    return tuned, selected, [("tune", grid.tune_specs(prof)),
                             ("final", grid.final_specs(prof, selected or {}, partial="provisional"))]


def rows(prof: grid.Profile, results: str, staged=None) -> list[dict]:
    """staged: _stages(prof, results) when the caller already has it."""
    tuned, selected, stages = staged or _stages(prof, results)
    out = []
    per_step: dict[str, list] = {}   # study -> wall seconds per training step of its complete runs
    for stage, specs in stages:
        by_study: dict[str, list] = {}
        for s in specs:
            by_study.setdefault(s.study, []).append(s)
        for study, ss in by_study.items():
            waiting = stage == "final" and tuned and bool(prof.studies[study].lr_grid) and (
                selected is None or any(s.tune_key not in selected for s in ss))
            done, diverged, walls, corrupt, training, missing = 0, 0, [], [], 0, []
            for s in ss:
                f = paths.run_dir(s.run_id, results) / paths.SUMMARY
                if not f.is_file():
                    training += paths.in_training(f.parent)
                    missing.append(s)
                else:
                    try:
                        summ = paths.read_summary(f.parent)
                    except paths.UNREADABLE as e:
                        corrupt.append((f.parent, e))
                        missing.append(s)
                        continue
                    done += 1
                    diverged += summ.get("status") == "diverged"
                    walls.append(float(summ.get("wall_s") or 0.0))
                    per_step.setdefault(study, []).append(walls[-1] / max(1, s.cfg.steps))
            out.append({"study": study, "stage": stage, "runs": len(ss), "complete": done, "missing": len(ss) - done,
                        "diverged": diverged, "training": training, "mean_wall_s": sum(walls) / len(walls) if walls else None,
                        "waiting_for_lr": waiting, "corrupt": [str(d) for d, _ in corrupt], "steps_missing": sum(s.cfg.steps for s in ss) * (not walls),
                        "modelled_s": sum(RUN_OVERHEAD_S + estimate_seconds(s.cfg) for s in missing)})
    for r in out:
        # a stage with no complete run yet: its steps x the study's seconds per step in the other stage
        if r["mean_wall_s"] is None and r["missing"] and per_step.get(r["study"]):
            sps = per_step[r["study"]]
            r["estimate_s"], r["from_other_stage"] = sum(sps) / len(sps) * r["steps_missing"], True
        elif r["mean_wall_s"] is not None:
            r["estimate_s"], r["from_other_stage"] = r["mean_wall_s"] * r["missing"], False
        elif r["missing"]:   # no run of this study timed here yet: the cost model
            r["estimate_s"], r["from_other_stage"], r["from_model"] = r["modelled_s"], False, True
    return out


def main(args) -> int:
    prof = grid.load_profile(args.profile)
    blocker = paths.file_in_the_way(args.results)
    if blocker is not None:
        raise ConfigError(f"--results {args.results}: {blocker} is a file, not a folder")
    if not paths.runs_dir(args.results).is_dir():
        print(f"note: {paths.runs_dir(args.results)} does not exist: no run has been written into "
              f"--results {args.results} yet (is it the folder the pipeline writes?)")
    staged = _stages(prof, args.results)
    table = rows(prof, args.results, staged)
    print(f"{'study':<18} {'stage':<6} {'complete':>9} {'missing':>8} {'training':>9} {'diverged':>9}  time left")
    total_left, modelled = 0.0, False
    for r in table:
        if r["missing"] == 0:
            left = "done"
        else:
            secs = r["estimate_s"] / max(1, args.cores)
            total_left += secs
            modelled |= r.get("from_model", False)
            left = f"~{secs / 60:.1f} min" + (" (per step as in tuning)" if r["from_other_stage"] else
                                              " (cost model)" if r.get("from_model") else "")
        note = " (lr not selected yet: run ids are provisional)" if r["waiting_for_lr"] else ""
        print(f"{r['study']:<18} {r['stage']:<6} {r['complete']:>4}/{r['runs']:<4} {r['missing']:>8} "
              f"{r['training']:>9} {r['diverged']:>9}  {left}{note}")
    n = sum(r["runs"] for r in table)
    c = sum(r["complete"] for r in table)
    print(f"total: {c}/{n} runs complete; ~{total_left / 60:.1f} min left on {args.cores} cores"
          + (" (studies with no run timed here yet: vgbench's cost model, fitted on one machine; machines of one "
             "kind differ ~2x)" if modelled else ""))
    corrupt = [d for r in table for d in r["corrupt"]]
    if corrupt:
        print(f"note: {len(corrupt)} run(s) have a summary.json that cannot be read (counted as missing; the "
              f"pipeline's aggregate stage stops on them): {', '.join(corrupt[:3])}{' ...' if len(corrupt) > 3 else ''}")
    counts = run_counts(paths.run_dir(s.run_id, args.results) for _, ss in staged[2] for s in ss)
    commits, kernels = counts["commits"], counts["kernels"]
    if len(commits) > 1:
        print("note: these runs were trained at " + ", ".join(f"{k[:10]}{'-dirty' * k.endswith('-dirty')} ({v})" for k, v in commits.items())
              + " -- results resumed across code versions; delete the runs of older commits to retrain them")
    if len(kernels) > 1:
        print("note: these runs were trained with torch's " + ", ".join(f"{k} ({v})" for k, v in kernels.items())
              + " CPU kernels -- machines that round differently; their numbers are not bit-comparable")
    return 0
