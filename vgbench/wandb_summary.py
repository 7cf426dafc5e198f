"""`vgbench wandb-summary`: one aggregate W&B run (offline unless WANDB_MODE says otherwise)
with the figures, tables and statistics as an artifact and the per-condition results as a
W&B Table. Tracking is optional: with WANDB_MODE=disabled, or if wandb fails, the marker
file says so and the pipeline goes on."""
from __future__ import annotations

import os
from pathlib import Path

from vgbench.provenance import write_json_atomic
from vgbench import paths


def main(args) -> int:
    from vgbench import grid
    prof = grid.load_profile(args.profile)
    res = paths.require(args.results, "stats stage", profile=prof)
    out = paths.wandb_summary(res)
    mode = os.environ.get("WANDB_MODE", "offline")
    info = {"mode": mode, "profile": prof.name, "profile_hash": prof.hash}
    if mode == "disabled":
        write_json_atomic(out, {**info, "status": "disabled"})
        print("wandb-summary: WANDB_MODE=disabled, nothing logged")
        return 0
    try:
        import pandas as pd
        import wandb
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "vgbench"), job_type="summary",
                         name=f"summary-{prof.name}-{prof.hash}", dir=str(res), mode=mode,
                         config={"profile": prof.name, "profile_hash": prof.hash}, tags=["summary", prof.name])
        cond = pd.read_csv(paths.stats("conditions", res))
        run.log({"conditions": wandb.Table(dataframe=cond)})
        claims = paths.stats("claims", res)
        if claims.exists() and claims.stat().st_size > 1:
            run.log({"claims": wandb.Table(dataframe=pd.read_csv(claims))})
        for png in sorted((res / paths.FIGURES).glob("*.png")):
            run.log({f"figures/{png.stem}": wandb.Image(str(png))})
        art = wandb.Artifact(f"vgbench-{prof.name}", type="results", metadata=info)
        for sub in (paths.FIGURES, paths.TABLES, paths.STATS):
            art.add_dir(str(res / sub), name=sub)
        run.log_artifact(art)
        info.update({"status": "ok", "run_dir": str(Path(run.dir).parent)})
        run.finish()
    except Exception as e:  # noqa: BLE001 - tracking never fails the pipeline
        info.update({"status": "failed", "error": str(e)})
    write_json_atomic(out, info)
    print(f"wandb-summary: {info['status']} -> {out}")
    return 0
