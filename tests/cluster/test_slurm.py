"""The smoke pipeline on a real one-node SLURM cluster (slurm_up.sh), through Snakemake's
SLURM executor plugin. Marked `slurm`: `.ci/run` runs it; it needs root and apt-get."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SNAKEMAKE, snake

HERE = Path(__file__).parent
pytestmark = pytest.mark.slurm
FAST = ["--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2",
        "--seconds-between-status-checks", "5", "--group-components", "train=1"]


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the SLURM test brings up a cluster and needs root")
    if shutil.which("apt-get") is None:
        pytest.skip("the SLURM test installs Debian packages and needs apt-get")
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
    up = subprocess.run(["bash", str(HERE / "slurm_up.sh")], capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    yield
    subprocess.run(["bash", str(HERE / "slurm_down.sh")], capture_output=True, text=True)


def sacct_states(since: str) -> dict[str, str]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-S", since, "--format=JobID,State"],
                         capture_output=True, text=True).stdout
    return dict(line.split("|")[:2] for line in out.split() if "|" in line)


def summaries(res: Path) -> dict:
    out = {}
    for f in (res / "runs").glob("*/summary.json"):
        s = json.loads(f.read_text())
        out[f.parent.name] = (s["status"], s["steps"], s["final"], s["grad_ratio_init"])
    return out


def test_smoke_on_slurm_matches_local(cluster, smoke, tmp_path):
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.time()
    p = snake(tmp_path, "--configfile", str(REPO / "configs/smoke.yaml"), *FAST, profile="slurm")
    print(f"smoke pipeline on SLURM: {time.time() - t0:.0f} s")
    states = sacct_states(since)
    assert states and set(states.values()) == {"COMPLETED"}, states
    assert "submitted with SLURM jobid" in p.stdout + p.stderr
    local, remote = summaries(smoke[0] / "results"), summaries(tmp_path / "results")
    assert local.keys() == remote.keys() and len(local) > 100
    assert local == remote      # same metrics, same seeds: results do not depend on the executor


def test_killed_job_fails_clearly_and_rerun_completes_the_rest(cluster, tmp_path):
    cmd = [*SNAKEMAKE, "-d", str(tmp_path), "--workflow-profile", str(REPO / "workflow/profiles/slurm"),
           "--configfile", str(REPO / "configs/smoke.yaml"), *FAST, "--retries", "0"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    logf = open(tmp_path / "snakemake.log", "w")   # a file, not a pipe nobody reads while we wait
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    victim = None
    for _ in range(600):
        out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True).stdout.split()
        if out:
            victim = out[0]
            break
        time.sleep(0.5)
    assert victim, "no SLURM job started"
    time.sleep(3)
    # Kill the job's processes on the node (SLURM records it FAILED). `scancel`, even with
    # --signal=KILL, gives the state "CANCELLED by <uid>" on Slurm 22.05, which
    # snakemake-executor-plugin-slurm 2.8 does not match against "CANCELLED": Snakemake then
    # waits for that job forever (a plugin bug this test found; see the README).
    pids = subprocess.run(["scontrol", "listpids", victim], capture_output=True, text=True).stdout.split("\n")[1:]
    for line in pids:
        if line.split():
            subprocess.run(["kill", "-9", line.split()[0]])
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"Snakemake did not notice that SLURM job {victim} was killed within 10 minutes")
    logf.close()
    log = (tmp_path / "snakemake.log").read_text()
    assert proc.returncode != 0
    assert "Error in group" in log or "Error in rule" in log or "failed" in log.lower(), log[-3000:]
    before = {f: f.stat().st_mtime_ns for f in (tmp_path / "results/runs").glob("*/summary.json")}
    p = snake(tmp_path, "--configfile", str(REPO / "configs/smoke.yaml"), *FAST, profile="slurm")
    assert (tmp_path / "results/MANIFEST.json").is_file()
    assert all(f.stat().st_mtime_ns == t for f, t in before.items())   # complete runs were not retrained
    assert "already complete" in "".join(f.read_text() for f in (tmp_path / "results/logs").rglob("*.log")) \
        or not before
