"""Provenance helpers that import nothing heavy (no torch): git commit, file hashes."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
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


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def is_temp(path: str | Path) -> bool:
    """A temporary file of atomic_write (left behind only by a process killed while writing)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


@contextlib.contextmanager
def atomic_write(path: str | Path):
    """Yields a temporary path beside `path` to write to; on success it replaces `path` (fsynced,
    then the directory), so `path` is either the old file or the complete new one, also after a
    kill or a power cut; on an error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def code_hash(root: str | Path | None = None) -> str:
    """sha256 of the vgbench package's Python sources (relative paths and bytes, sorted; `root`: the
    package folder, default this one): what the analysis stages ran with, also for an uncommitted
    tree where the commit alone would not say."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def write_json_atomic(path: Path, data) -> None:
    """Write JSON so that `path` is either absent or complete, also after a power cut."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2, sort_keys=True))


def versions() -> dict:
    """Versions of Python and of the packages a result depends on (installed metadata)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for pkg in ("vgbench", "torch", "pytorch-lightning", "numpy", "scipy", "statsmodels", "pandas", "seaborn",
                "snakemake"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


# VGBENCH_KERNELS=avx2 pins the CPU kernels of torch (ATen), MKL and oneDNN to AVX2, for results
# trained on machines that differ (a cluster's mixed nodes; AVX-512 on some machines of a kind and
# not on others): each library otherwise picks the widest instructions the CPU has, and they round
# differently -- one run of the default profile ended with a first/last ratio of 5.0e-4 on AVX-512
# kernels and 2.0e-2 on AVX2 ones. Off by default (native), so results stay those of the machines
# that made the shipped evidence; a variable already set wins.
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _cpuinfo(field: str) -> str | None:
    """The first `field` line of /proc/cpuinfo ("flags", "model name"); None where there is none."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.split(":", 1)[0].strip() == field), None)


def _cpu_flags() -> set:
    return set((_cpuinfo("flags") or "").split())


def pin_kernels() -> dict:
    """With VGBENCH_KERNELS=avx2, pin torch's, MKL's and oneDNN's CPU kernels to AVX2 (variables the
    user set are kept); returns what it set. Must run before torch is imported (the libraries read
    the variables once). ValueError for another value, or a CPU without AVX2."""
    import sys
    want = os.environ.get("VGBENCH_KERNELS", "native")
    if want == "native":
        return {}
    if want != "avx2":
        raise ValueError(f"VGBENCH_KERNELS must be 'native' or 'avx2', got {want!r}")
    if "avx2" not in _cpu_flags():
        raise ValueError("VGBENCH_KERNELS=avx2, but this CPU has no AVX2 (or no /proc/cpuinfo to say so)")
    out = {k: v for k, v in PINNED_KERNELS.items() if k not in os.environ}
    if out and "torch" in sys.modules:
        raise ValueError("VGBENCH_KERNELS=avx2 came after torch was imported in this process, which has chosen its "
                         "kernels: set it before the process starts")
    os.environ.update(out)
    return out


@functools.lru_cache(maxsize=1)
def platform_info() -> dict:
    """The machine as the numbers see it: torch's CPU kernels (AVX512, AVX2, ...: another set of
    kernels rounds differently, and a chaotic run then ends elsewhere), the CPU, and the
    variables that pin the kernels where set. Once per process: none of it changes while it runs."""
    import platform
    import torch
    return {"machine": platform.machine(), "cpu": _cpuinfo("model name") or platform.processor() or "unknown",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "kernel_env": {k: os.environ[k] for k in PINNED_KERNELS if k in os.environ}}


def kernels_of(record: dict) -> str | None:
    """The CPU kernel set a run's config.json records (None for runs from before it was)."""
    return (record.get("platform") or {}).get("cpu_capability")


def run_counts(run_dirs) -> dict[str, dict[str, int]]:
    """How many of these run directories were trained at each git commit ("commits") and with each
    of torch's CPU kernel sets ("kernels"), read from each run's config.json in one pass ('unknown'
    where it records none). Results resumed across code versions show more than one commit (a run
    id hashes the config, not the code that trained it); results from different CPUs more than one
    kernel set (their numbers are not bit-comparable)."""
    counts: dict[str, dict[str, int]] = {"commits": {}, "kernels": {}}
    for d in run_dirs:
        f = Path(d) / "config.json"
        if not f.is_file():
            continue
        try:
            rec = json.loads(f.read_text())
            got = {"commits": rec.get("commit"), "kernels": kernels_of(rec)}
        except (ValueError, OSError, AttributeError):
            got = {}
        for k, c in counts.items():
            v = got.get(k) or "unknown"
            c[v] = c.get(v, 0) + 1
    return {k: dict(sorted(c.items(), key=lambda kv: -kv[1])) for k, c in counts.items()}


# the PNG text chunk that figures.style.save writes a figure's provenance (JSON) to
FIGURE_PNG_KEY = "Description"


def blank_in(png) -> bool:
    """Whether a figure file written by `figures.style.save` was blank (from its provenance; False if
    unreadable). Here, not in figures.style, so the paper stage reads it without importing seaborn."""
    from PIL import Image
    try:
        with Image.open(png) as im:
            return bool(json.loads(im.info.get(FIGURE_PNG_KEY, "{}")).get("blank", False))
    except (OSError, ValueError):
        return False
