"""The one module that knows the results folder layout (DESIGN.md's data flow and run-directory
contract). Every stage, the Snakefile and the tests build their paths with these functions."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from vgbench.config import ConfigError
from vgbench.provenance import is_temp

# inside a run directory
CONFIG = "config.json"
METRICS = "metrics.csv"
GRADIENTS = "gradients.parquet"
SUMMARY = "summary.json"
WANDB = "wandb"
LOCK = ".lock"   # held (flock) while a process trains into the directory; removed when it ends
RUN_FILES = (CONFIG, METRICS, GRADIENTS, SUMMARY)
METRIC_COLUMNS = ("step", "split", "metric", "value")          # metrics.csv
GRADIENT_COLUMNS = ("step", "kind", "index", "name", "value")  # gradients.parquet
# what reading a run's or a stage's file raises when it is truncated, corrupt or hand-edited
# (JSON, CSV and Arrow parse errors are ValueErrors)
UNREADABLE = (OSError, ValueError, KeyError, TypeError)

# the stage folders under a results folder, in pipeline order
RUNS, JOBS, TUNING, AGGREGATE, STATS, FIGURES, TABLES = "runs", "jobs", "tuning", "aggregate", "stats", "figures", "tables"
AGGREGATES = ("runs", "curves", "jobs")                                          # aggregate/<name>.parquet
STATS_TABLES = ("conditions", "comparisons", "friedman", "ranks", "claims")  # stats/<name>.csv
THEORY = "theory"                                                        # stats/theory.csv
FIGURE_NAMES = ("grad_depth_init", "grad_depth_training", "grad_ratio_curves", "accuracy_vs_depth",
                "mitigation_effects", "rnn_grad_time", "rnn_seq_len", "training_curves", "saturation",
                "critical_difference", "lr_sensitivity", "exploding", "phase_diagram", "length_vs_depth")             # figures/<name>.{pdf,png}
TABLE_NAMES = ("main_results", "grad_ratios", "rnn_results", "theory_vs_measured", "setup", "claims",
               "answers", "numbers")                                              # tables/<name>.tex
# the figures and tables that read stats/theory.csv (the others are drawn while theory computes)
USES_THEORY = ("grad_depth_init", "length_vs_depth", "theory_vs_measured", "numbers")
PAPER = "paper/vgbench.pdf"  # the default results folder's paper (DESIGN.md); others: <results>/vgbench.pdf


def code_stamp(results: str | Path = "results") -> Path:
    """aggregate/code.sha256: provenance.code_hash() of the package the analysis last ran with; the
    pipeline rewrites it when the package changes, and aggregate (so every later stage) reruns."""
    return Path(results) / AGGREGATE / "code.sha256"


def runs_dir(results: str | Path = "results") -> Path:
    return Path(results) / RUNS


def run_dir(run_id: str, results: str | Path = "results") -> Path:
    return runs_dir(results) / run_id


def is_complete(run: str | Path) -> bool:
    """A run is complete when its summary.json exists (it is written last, atomically)."""
    return (Path(run) / SUMMARY).is_file()


def _is_run_entry(p: Path) -> bool:
    """An entry a vgbench run writes: its data files, its lock, its wandb folder, atomic_write's temp files."""
    name = p.name
    if name in RUN_FILES or name == LOCK:
        return p.is_file()
    if name == WANDB:
        return p.is_dir()
    return p.is_file() and is_temp(p)


def _is_vgbench_run(out: Path) -> bool:
    """True if `out` holds only what a vgbench run writes, starting with its config.json."""
    try:
        meta = json.loads((out / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(meta, dict) and {"config", "run_id"} <= set(meta)
            and all(_is_run_entry(p) for p in out.iterdir()))


def read_summary(run: str | Path) -> dict:
    """A run's summary.json as a mapping; ValueError naming the problem if it is not one (a disk
    that filled up, a hand edit, bit rot)."""
    meta = json.loads((Path(run) / SUMMARY).read_text())
    if not isinstance(meta, dict) or "status" not in meta:
        raise ValueError("not a vgbench summary (no 'status')")
    return meta


def read_run_record(run: str | Path) -> dict:
    """A run's config.json (its config, commit and versions: the run's provenance) as a mapping;
    ValueError if it cannot be read or records another run."""
    rec = json.loads((Path(run) / CONFIG).read_text())
    if not isinstance(rec, dict) or not isinstance(rec.get("config"), dict):
        raise ValueError(f"{CONFIG} is not a vgbench run record (no 'config' mapping)")
    if rec.get("run_id") != Path(run).name:
        raise ValueError(f"{CONFIG} records run {rec.get('run_id')!r}, not this directory's")
    return rec


def corrupt_runs_error(bad: list) -> ConfigError:
    """One error for every run whose files cannot be read: [(run directory, reason)], with the
    command that makes the pipeline retrain them (nothing is deleted here)."""
    lines = [f"  {d}: {' '.join(str(why).split())[:160]}" for d, why in bad[:10]]
    more = [f"  ... and {len(bad) - 10} more"] if len(bad) > 10 else []
    return ConfigError(f"{len(bad)} complete run(s) have unreadable files:\n" + "\n".join(lines + more)
                       + f"\nmove them aside or delete them (rm -r {' '.join(str(d) for d, _ in bad[:10])}) and run "
                       "the same command again: the pipeline retrains exactly the runs that are missing")


def file_in_the_way(folder: str | Path) -> Path | None:
    """The path itself or the first of its parents that exists but is not a directory (so the
    folder cannot be made there), else None."""
    folder = Path(folder)
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


def check_run_dir(out: Path, force: bool) -> None:
    """ConfigError, with nothing touched, unless `out` may receive a run: missing, empty, an
    interrupted vgbench run (only a run's own files, config.json first) or, with force, a
    complete one. Anything else (a file, a directory with other content, `--out .`) is refused."""
    blocker = file_in_the_way(out)
    if blocker == out:
        raise ConfigError(f"--out {out} is an existing file, not a run directory")
    if blocker is not None:
        raise ConfigError(f"--out {out}: {blocker} is a file, so the run directory cannot be made under it")
    if out.is_dir() and any(p.name != LOCK for p in out.iterdir()):
        if not _is_vgbench_run(out):
            raise ConfigError(f"--out {out} is a non-empty directory that is not a vgbench run directory; "
                              "refusing to clear it (choose a new or empty directory)")
        if is_complete(out) and not force:
            raise ConfigError(f"{out} already holds a complete run (summary.json); pass --force to retrain it")


class RunLock:
    """An exclusive lock on a run directory while one process trains into it (flock on its .lock
    file, so the kernel releases it when the process dies, SIGKILL included). A second process
    training into the same directory used to clear the first one's files and interleave its own
    with them: a run whose config.json and summary.json described different runs."""

    def __init__(self, out: Path, attempts: int = 20):
        import fcntl
        import time
        self.path, self.fd = Path(out) / LOCK, None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                attempts -= 1    # a moment's wait: `vgbench status` probes the lock for microseconds
                if attempts > 0:
                    os.close(fd)
                    time.sleep(0.05)
                    continue
                pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise ConfigError(f"{out} is being trained by another process (pid {pid}): wait for it to "
                                  "finish, or choose another --out") from None
            except OSError:      # a file system without flock: train unlocked, as before
                os.close(fd)
                return
            try:                 # the holder before us may have removed the file we locked
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def in_training(run: str | Path) -> bool:
    """True while a process holds the run directory's lock (probed for an instant with a shared
    lock, which a trainer starting at that moment waits out: RunLock retries for a second)."""
    import fcntl
    try:
        fd = os.open(Path(run) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def prepare_run_dir(out: Path, force: bool) -> RunLock:
    """Make `out` ready for a run without ever deleting anything that is not a vgbench run's
    (check_run_dir), and lock it: an interrupted run is cleared, a complete run only with force.
    The caller trains, then releases the lock (RunLock.release)."""
    check_run_dir(out, force)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out)
    try:
        check_run_dir(out, force)   # again, now that no other process can change it
        for p in out.iterdir():     # only the run's own entries (checked above)
            if p.name != LOCK:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    except BaseException:
        lock.release()
        raise
    return lock


def job_marker(stage: str, job: str, results: str | Path = "results") -> Path:
    """The Snakemake output of one training job: written after all of its runs are complete."""
    return Path(results) / JOBS / stage / f"{job}.json"


def selected_lr(results: str | Path = "results") -> Path:
    return Path(results) / TUNING / "selected_lr.csv"


def aggregate(name: str, results: str | Path = "results") -> Path:
    return Path(results) / AGGREGATE / f"{name}.parquet"


def stats(name: str, results: str | Path = "results") -> Path:
    return Path(results) / STATS / f"{name}.csv"


def figure(name: str, ext: str, results: str | Path = "results") -> Path:
    return Path(results) / FIGURES / f"{name}.{ext}"


def table(name: str, results: str | Path = "results") -> Path:
    return Path(results) / TABLES / f"{name}.tex"


def stage_inputs(results: str | Path = "results") -> dict:
    """What each later stage reads, by the stage(s) that write it."""
    return {"aggregate stage": [aggregate(n, results) for n in AGGREGATES],
            "stats stage": [stats(n, results) for n in STATS_TABLES],
            "theory stage": [stats(THEORY, results)],
            "figure and table stages": [*(figure(n, "pdf", results) for n in FIGURE_NAMES),
                                 *(table(n, results) for n in TABLE_NAMES)]}


def results_folder(results) -> str:
    """A results folder the pipeline may write into: a non-empty path that is not a file and is not
    under one (ConfigError otherwise, before any job)."""
    text = str(results).strip() if results is not None else ""
    if not text:
        raise ConfigError("results: empty; give the folder the pipeline writes, e.g. --config results=results/mine")
    if set(text) & set("{}"):
        raise ConfigError(f"results={text}: braces are Snakemake's wildcard syntax in output paths; "
                          "choose a folder name without { or }")
    blocker = file_in_the_way(text)
    if blocker is not None:
        raise ConfigError(f"results={text}: {blocker} is a file, not a folder")
    return text


def drawn_from(name: str) -> tuple:
    """The stages whose outputs figure or table `name` reads (for require)."""
    return ("aggregate stage", "stats stage") + ("theory stage",) * (name in USES_THEORY)


def require(results: str | Path, *stages: str, profile=None, flag: str = "--results") -> Path:
    """Check a results folder before a stage reads it: ConfigError (exit 2) when `--results`
    names no folder, FileNotFoundError naming the stage to run first when an input is missing
    (so a mistyped --results never becomes a new folder of empty figures)."""
    res = Path(results)
    if not res.is_dir():
        raise ConfigError(f"{flag} {res}: no such results folder" if not res.exists()
                          else f"{flag} {res} is a file, not a results folder")
    inputs = stage_inputs(res)
    for stage in stages:
        missing = [p for p in inputs[stage] if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FileNotFoundError(f"{missing[0]} is missing{more}: run the {stage} first "
                                    "(the pipeline does: snakemake --configfile PROFILE)")
    if profile is not None and aggregate("runs", res).is_file():
        _same_studies(res, profile)
    return res


def _same_studies(res: Path, profile) -> None:
    """ConfigError unless the results' aggregate holds exactly the profile's studies: a figure or
    table drawn from another profile's results (a mistyped PROFILE) came out labelled with this
    profile's name and hash."""
    import pyarrow.parquet as pq
    have = set(pq.read_table(aggregate("runs", res), columns=["study"]).column("study").to_pylist())
    want = set(profile.studies)
    if have != want:
        raise ConfigError(f"--results {res} holds the runs of studies {', '.join(sorted(have)) or 'none'}, but "
                          f"profile {profile.name} ({profile.path}) has {', '.join(sorted(want))}: give the profile "
                          "these results were made with (or run the aggregate stage again)")


def manifest(results: str | Path = "results") -> Path:
    return Path(results) / "MANIFEST.json"


def wandb_summary(results: str | Path = "results") -> Path:
    return Path(results) / "wandb_summary.json"


def paper_build(results: str | Path = "results") -> Path:
    return Path(results) / "paper_build"


def paper(results: str | Path = "results") -> str:
    """Where the paper of a results folder goes: paper/vgbench.pdf for the default folder,
    <results>/vgbench.pdf for any other (so `make smoke` never overwrites the paper)."""
    return PAPER if os.path.normpath(str(results)) == "results" else f"{results}/vgbench.pdf"
