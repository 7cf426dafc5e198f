"""Provenance helpers that import nothing heavy (no torch): git commit, file hashes."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def git_commit(cwd: str | Path | None = None) -> str:
    """`git describe --always --dirty` of the vgbench checkout, or 'unknown'."""
    cwd = cwd or Path(__file__).resolve().parents[1]
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=cwd,
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
