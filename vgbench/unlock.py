"""`vgbench unlock-stale [DIR]`: remove Snakemake's lock after a crash, but only when it is stale.

Snakemake locks its working directory (.snakemake/locks/) and leaves the lock behind when it
is killed (SIGKILL, the OOM killer, a power cut); the next run then stops with "Directory
cannot be locked". The lock is stale when no Snakemake process is alive whose working
directory is DIR: only then are the lock files removed (what `snakemake --unlock` does).
`make reproduce` and `make smoke` call this first, so rerunning the same command resumes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def snakemake_pids(workdir: Path) -> list[int]:
    """PIDs of live processes whose command line mentions snakemake and whose working
    directory (or `-d`/`--directory` argument) is `workdir` (Linux /proc)."""
    workdir = workdir.resolve()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if not any(b"snakemake" in a for a in argv) or int(proc.name) == os.getpid():
                continue
            cwd = Path(os.readlink(proc / "cwd"))
        except (OSError, ValueError):
            continue
        args = [a.decode(errors="replace") for a in argv]
        dirs = [cwd]
        for i, a in enumerate(args[:-1]):
            if a in ("-d", "--directory"):
                dirs.append((cwd / args[i + 1]).resolve())
        if workdir in dirs:
            found.append(int(proc.name))
    return found


def unlock_stale(workdir: str | Path = ".") -> str:
    """Remove a stale lock in workdir/.snakemake/locks; returns what was done, in words."""
    workdir = Path(workdir)
    locks = workdir / ".snakemake" / "locks"
    files = sorted(p for p in locks.glob("*") if p.is_file()) if locks.is_dir() else []
    if not files:
        return "no lock"
    pids = snakemake_pids(workdir)
    if pids:
        return (f"locked by a running Snakemake (pid {', '.join(map(str, pids))}); not unlocking. "
                "Wait for it, or stop it, then rerun the same command")
    for p in files:
        p.unlink()
    return (f"removed a stale Snakemake lock ({len(files)} files in {locks}: no Snakemake process is "
            "running here; the last one was killed); resuming")


def main(argv: list[str] | None = None) -> int:
    workdir = Path((argv or sys.argv[1:] or ["."])[0])
    if not workdir.is_dir():
        print(f"vgbench unlock-stale: error: {workdir} is not a directory (give the pipeline's working "
              "directory, the one holding .snakemake/)", file=sys.stderr)
        return 2
    msg = unlock_stale(workdir)
    if msg != "no lock":
        print(f"vgbench unlock-stale: {msg}", file=sys.stderr)
    return 0
