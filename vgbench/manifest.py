"""`vgbench manifest` / `vgbench verify`: results/MANIFEST.json, the provenance of every output.

Each entry: path (relative to the working directory), sha256, bytes, the rule that made it
and its inputs (as the workflow declares them). The manifest also records the profile and
its hash, the git commit and the vgbench version. `verify` recomputes every hash and fails,
naming the files, if any output is missing or was modified.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from vgbench.provenance import git_commit, is_temp, run_counts, sha256, write_json_atomic
from vgbench import paths



def _rule(rel: Path) -> tuple[str, list[str]]:
    parts = rel.parts
    top, name = parts[0], rel.stem
    if top == "runs":
        stage = "tune" if parts[1].startswith("tune-") else "final"
        return ("tune_job" if stage == "tune" else "train_job"), ["profile", f"jobs/{stage}/<job>.json"]
    if top == "jobs":
        return ("tune_job" if parts[1] == "tune" else "train_job"), ["profile"]
    if top == "tuning":
        return "select_lr", ["jobs/tune/*.json"]
    if top == "aggregate":
        return "aggregate", ["jobs/final/*.json", "runs/*/summary.json"]
    if top == "stats":
        return ("compute_theory" if name == "theory" else "compute_stats"), ["aggregate/runs.parquet",
                                                                            "aggregate/curves.parquet"]
    if top == "figures":
        return f"plot_{name}", ["aggregate/*.parquet", "stats/*.csv"]
    if top == "tables":
        return f"write_{name}", ["aggregate/*.parquet", "stats/*.csv"]
    return "unknown", []


def collect(results: Path, run_ids: set[str]) -> list[Path]:
    """Every stage output, and the files of the profile's runs (`run_ids`): a run directory
    left from an older version of the profile is not part of these results."""
    files = []
    for sub in (paths.AGGREGATE, paths.STATS, paths.FIGURES, paths.TABLES, paths.TUNING, paths.JOBS):
        files += sorted(p for p in (results / sub).rglob("*") if p.is_file() and not is_temp(p))
    for run_id in sorted(run_ids):
        run = paths.run_dir(run_id, results)
        files += [run / f for f in paths.RUN_FILES if (run / f).is_file()]
    return files


def _rel(p: Path) -> Path:
    """Paths relative to the working directory (where `vgbench verify` runs), if below it."""
    try:
        return Path(os.path.relpath(p)) if Path(p).resolve().is_relative_to(Path.cwd().resolve()) else Path(p)
    except ValueError:
        return Path(p)


def build(profile, results: str | Path, paper: str | Path | None) -> dict:
    import vgbench
    from vgbench.aggregate import expected
    results = _rel(Path(results))
    run_ids = {spec.run_id for spec in expected(profile, results)}
    others = sum(1 for d in paths.runs_dir(results).glob("*") if d.name not in run_ids)
    entries = []
    for f in collect(results, run_ids):
        rule, inputs = _rule(f.relative_to(results))
        entries.append({"path": f.as_posix(), "sha256": sha256(f), "bytes": f.stat().st_size, "rule": rule,
                        "inputs": [f"{results.as_posix()}/{i}" if i != "profile" else profile.path for i in inputs]})
    if paper and Path(paper).is_file():
        entries.append({"path": Path(paper).as_posix(), "sha256": sha256(paper), "bytes": Path(paper).stat().st_size,
                        "rule": "build_paper", "inputs": ["paper/main.tex", "paper/vgbench.bib",
                                                          f"{results.as_posix()}/tables/*.tex",
                                                          f"{results.as_posix()}/figures/*.pdf"]})
    return {"profile": profile.name, "profile_path": profile.path, "profile_hash": profile.hash,
            "commit": git_commit(), "vgbench": vgbench.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "n_files": len(entries),
            "n_runs": len(run_ids), "other_run_dirs_not_listed": others,
            **{f"run_{k}": v for k, v in run_counts(paths.run_dir(r, results) for r in sorted(run_ids)).items()},
            "files": entries}


def root_of(manifest: str | Path, entries: list) -> Path:
    """The directory the manifest's relative paths start from (the pipeline's working directory),
    found from where the manifest lies, <root>/<results>/MANIFEST.json: the ancestor whose path to
    the manifest's folder prefixes most entries. So `vgbench verify` gives the same answer from any
    working directory."""
    here = Path(manifest).resolve().parent
    rel = [e["path"] for e in entries if not Path(e["path"]).is_absolute()]
    best, hits = here, 0
    for root in here.parents:
        prefix = here.relative_to(root).as_posix() + "/"
        n = sum(p.startswith(prefix) for p in rel)
        if n > hits:
            best, hits = root, n
    return best


def verify(manifest: str | Path) -> list[str]:
    """Problems found: 'modified: PATH' / 'missing: PATH' (empty list = all good)."""
    m = json.loads(Path(manifest).read_text())
    root = root_of(manifest, m["files"])
    problems = []
    for e in m["files"]:
        p = root / e["path"]
        if not p.is_file():
            problems.append(f"missing: {e['path']}")
        elif sha256(p) != e["sha256"]:
            problems.append(f"modified: {e['path']}")
    return problems


def main(args) -> int:
    from vgbench import grid
    prof = grid.load_profile(args.profile)
    paths.require(args.results, profile=prof)   # a manifest of another profile's results would misname them
    m = build(prof, args.results, args.paper)
    out = paths.manifest(args.results)
    write_json_atomic(out, m)
    print(f"manifest: {m['n_files']} files -> {out}")
    return 0


def verify_main(args) -> int:
    path = Path(args.manifest)
    if path.is_dir():                      # `vgbench verify results/frontier`: the folder's manifest
        path = paths.manifest(path)
    if not path.is_file():
        print(f"vgbench verify: error: {path} not found (run the pipeline first)", file=sys.stderr)
        return 2
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, list) or not all(isinstance(e, dict) and {"path", "sha256"} <= set(e) for e in files):
            raise ValueError("'files' is not a list of {path, sha256} entries")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        print(f"vgbench verify: error: {path} is not a vgbench manifest ({type(e).__name__}: {e}); "
              "rebuild it with the pipeline's manifest stage", file=sys.stderr)
        return 2
    problems = verify(path)
    n = len(files)
    if problems:
        for p in problems:
            print(f"vgbench verify: {p}", file=sys.stderr)
        print(f"vgbench verify: FAILED, {len(problems)} of {n} files do not match {path}", file=sys.stderr)
        return 1
    print(f"vgbench verify: OK, {n} files match {path}")
    return 0
