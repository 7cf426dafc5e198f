"""`vgbench aggregate`: every run directory of a profile -> two Parquet tables.

runs.parquet   one row per run (tuning and final; column `stage`): ids, study, variant,
               axis labels, the resolved config (task_args flattened as task_args.<k>),
               and the summary (status, final metrics as final.<split>/<metric>, ...), and
               the provenance its config.json records (commit, cpu_capability).
curves.parquet the final runs' gradients.parquet and metrics.csv stacked, long format:
               run_id, condition_id, study, variant, step, kind, index, name, value;
               metrics appear as kind "metric", name "<split>/<metric>", index -1.
jobs.parquet   one row per training job (tune and final): its process's CPU and import seconds.
Fails, naming them, if any expected run is missing or incomplete.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from vgbench.config import ConfigError
from vgbench import grid, paths
from vgbench.provenance import atomic_write, kernels_of
from vgbench.select_lr import read_selected


def expected(profile: grid.Profile, results: str | Path) -> list[grid.RunSpec]:
    sel_csv = paths.selected_lr(results)
    tuned = any(s.lr_grid for s in profile.studies.values())
    if tuned and not sel_csv.is_file():
        raise FileNotFoundError(f"{sel_csv} is missing: run the tune and select_lr stages first")
    selected = read_selected(sel_csv) if tuned else {}
    return grid.tune_specs(profile) + grid.final_specs(profile, selected)


def _row(spec: grid.RunSpec, summary: dict) -> dict:
    row = {"run_id": spec.run_id, "study": spec.study, "variant": spec.variant, "stage": spec.stage,
           "condition_id": spec.condition_id, "tune_key": spec.tune_key,
           "labels": json.dumps(dict(spec.labels), default=str)}
    for k, v in spec.cfg.to_dict().items():
        if k == "task_args":
            for a, b in v.items():
                row[f"task_args.{a}"] = b
        else:
            row[k] = v
    for k, v in summary.items():
        if k == "final":
            for m, x in v.items():
                row[f"final.{m}"] = x
        elif k == "baseline":
            row["baseline_value"], row["baseline_metric"] = v["value"], v["metric"]
        elif k not in ("run_id", "condition_id", "pretrain"):
            row[k] = v
    return row


def aggregate(profile: grid.Profile, results: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    specs = expected(profile, results)
    missing = [s.run_id for s in specs if not paths.is_complete(paths.run_dir(s.run_id, results))]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(specs)} expected runs are missing or incomplete "
                                f"(no summary.json), e.g. {', '.join(missing[:5])}")
    rows, curves, bad = [], [], []
    for spec in specs:
        d = paths.run_dir(spec.run_id, results)
        try:
            summary = paths.read_summary(d)
            rec = paths.read_run_record(d)   # the provenance the manifest cites must be readable too
            rows.append({**_row(spec, summary), "cpu_capability": kernels_of(rec), "commit": rec.get("commit")})
            if spec.stage != "final":
                continue
            g = pd.read_parquet(d / paths.GRADIENTS)
            m = pd.read_csv(d / paths.METRICS)
            for f, cols, have in ((paths.GRADIENTS, paths.GRADIENT_COLUMNS, g.columns),
                                  (paths.METRICS, paths.METRIC_COLUMNS, m.columns)):
                if set(cols) - set(have):
                    raise ValueError(f"{f} lacks columns {sorted(set(cols) - set(have))}")
        except paths.UNREADABLE as e:
            bad.append((d, f"{type(e).__name__}: {e}"))
            continue
        m = pd.DataFrame({"step": m.step, "kind": "metric", "index": -1,
                          "name": m.split + "/" + m.metric, "value": m.value})
        c = pd.concat([g, m], ignore_index=True)
        c.insert(0, "run_id", spec.run_id)
        c.insert(1, "condition_id", spec.condition_id)
        c.insert(2, "study", spec.study)
        c.insert(3, "variant", spec.variant)
        curves.append(c)
    if bad:
        raise paths.corrupt_runs_error(bad)
    runs = pd.DataFrame(rows)
    for col in runs.columns[runs.dtypes == object]:
        # a field whose values are numbers or words (forget_bias: 1.0 | chrono) is stored as text
        kinds = {type(v) for v in runs[col].dropna()}
        if str in kinds and kinds & {int, float}:
            runs[col] = runs[col].map(lambda v: v if v is None or isinstance(v, str) else repr(v))
    jobs = job_table(profile, results)
    cur = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(
        columns=["run_id", "condition_id", "study", "variant", "step", "kind", "index", "name", "value"])
    for col in ("run_id", "condition_id", "study", "variant", "kind", "name"):
        cur[col] = cur[col].astype("category")
    return runs, cur, jobs


# what run_job records about its process (the job marker's "process")
PROCESS_KEYS = ("cpu_s", "import_s", "trained", "runs_wall_s", "runs_cpu_s")


def job_table(profile: grid.Profile, results: str | Path) -> pd.DataFrame:
    """One row per training job's marker: the process's CPU seconds, its import seconds, how many
    runs it trained and their wall seconds (NaN for markers written before these were recorded)."""
    rows = []
    for stage in ("tune", "final"):
        for p in sorted((Path(results) / paths.JOBS / stage).glob("*.json")):
            try:
                m = json.loads(p.read_text())
                m["job"], m["runs"]
            except paths.UNREADABLE as e:
                raise ConfigError(f"job marker {p} cannot be read ({type(e).__name__}: {e}); delete it and run the "
                                  "same command again: its job re-checks its runs and retrains none that are "
                                  "complete") from None
            if m.get("profile_hash") != profile.hash:
                continue
            proc = m.get("process") or {}
            rows.append({"stage": stage, "job": m["job"], "runs": len(m["runs"]),
                         **{k: proc.get(k, float("nan")) for k in PROCESS_KEYS}})
    return pd.DataFrame(rows, columns=["stage", "job", "runs", *PROCESS_KEYS])


def main(args) -> int:
    profile = grid.load_profile(args.profile)
    runs, curves, jobs = aggregate(profile, args.results)
    out = paths.aggregate("runs", args.results).parent
    out.mkdir(parents=True, exist_ok=True)
    for name, df in (("runs", runs), ("curves", curves), ("jobs", jobs)):
        with atomic_write(paths.aggregate(name, args.results)) as tmp:
            df.to_parquet(tmp, index=False)
    fin = runs[runs.stage == "final"]
    n_div = int((fin.status == "diverged").sum())
    print(f"aggregate: {len(runs)} runs found ({len(fin)} final: {len(fin) - n_div} ok, {n_div} diverged; "
          f"{len(runs) - len(fin)} tuning) -> {out}")
    return 0
