"""Shared test settings: W&B off unless a test turns it on, one thread, tiny configs."""
import os
import sys

import pytest

from vgbench.provenance import pin_kernels

pin_kernels()   # VGBENCH_KERNELS=avx2 pins the tests' kernels too (before torch is imported: it reads them once)
import torch  # noqa: E402

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("VGBENCH_ACCELERATOR", "cpu")
torch.set_num_threads(1)


_TASKS = {}


def cached_task(cfg):
    """load_task(cfg), built once per (task, task_args) for the whole session."""
    from vgbench.data import load_task
    key = (cfg.task, tuple(sorted(cfg.task_args.items())), cfg.data_seed)
    if key not in _TASKS:
        _TASKS[key] = load_task(cfg)
    return _TASKS[key]


@pytest.fixture
def tiny():
    """A few-second mnist1d MLP run config (a dict, so tests can vary it)."""
    return {"task": "mnist1d", "model": "mlp", "depth": 3, "width": 16, "steps": 20,
            "batch_size": 50, "record_points": 4}


# --- the Snakemake pipeline, shared by the pipeline and cluster tests ---------------------
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def snake(workdir, *args, check=True, profile="local", package_root=REPO, **kw):
    # the checkout under test (or `package_root`, a folder holding a vgbench package; run it with
    # cwd elsewhere, since `python -m` puts the working directory first), not whichever vgbench
    # happens to be installed
    env = {**os.environ, "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(package_root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    p = subprocess.run([*SNAKEMAKE, "-d", str(workdir), *(["--cores", "2"] if profile == "local" else []),
                        "--workflow-profile", str(REPO / "workflow/profiles" / profile), *args],
                       capture_output=True, text=True, env=env, cwd=kw.pop("cwd", REPO), **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return p


def executed(p, rule):
    """Number of jobs of `rule` Snakemake started (it prints 'rule <rule>:' per job)."""
    return (p.stdout + p.stderr).count(f"rule {rule}:")


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke profile run once, locally, end to end, in a temporary directory whose path has a
    space and a '#' (every shell command quotes its paths; LaTeX never sees them)."""
    work = tmp_path_factory.mktemp("smoke run #")
    p = snake(work, "--configfile", str(REPO / "configs/smoke.yaml"))
    return work, p
