"""The `vgbench` command line: one subcommand per pipeline stage.

Every subcommand validates its input before doing any work; invalid input exits with
code 2 and a message naming the problem. Heavy imports (torch, Lightning) happen only
after validation, so a bad config fails in well under a second.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from vgbench.config import ConfigError, from_file
from vgbench.provenance import pin_kernels


def _train(args) -> int:
    cfg = from_file(args.config, args.set)
    out = Path(args.out)
    from vgbench.paths import check_run_dir
    check_run_dir(out, args.force)  # before the heavy imports: a bad --out fails at once
    from vgbench.train import run
    s = run(cfg, out, force=args.force, tags=tuple(args.tag),
            progress=sys.stderr if sys.stderr.isatty() else None)  # silent in logs and pipes
    metric = "test/acc" if "test/acc" in s["final"] else "test/loss"
    print(f"{out}: {s['status']} after {s['steps']} steps, {metric} = {s['final'].get(metric)}, "
          f"grad_ratio_init = {s['grad_ratio_init']:.3g}, {s['wall_s']:.1f} s")
    return 0


def _bench(args) -> int:
    from vgbench.bench import main as bench_main
    return bench_main(args)


def _grid(args) -> int:
    from vgbench import grid
    prof = grid.load_profile(args.profile)
    tune, final = grid.tune_specs(prof), grid.final_specs(prof, {})
    specs = {"tune": tune, "final": final, "all": tune + final}[args.stage]
    if args.jobs:
        for job, runs in grid.jobs(specs).items():
            print(f"{job}\t{len(runs)} runs")
    else:
        for s in specs:
            print(s.run_id)
    tuned = sum(bool(s.lr_grid) for s in prof.studies.values())
    print(f"# profile {prof.name} ({prof.hash}): {len(prof.studies)} studies, {len(tune)} tuning runs, "
          f"{len(final)} final runs in {len(grid.jobs(final))} jobs"
          + (f"; {tuned} studies tune lr, so their final run ids depend on the selected lr" if tuned else ""),
          file=sys.stderr)
    return 0


def _study_map(text: str) -> tuple[str, str]:
    """argparse type: NEW=OLD, two non-empty study names."""
    new, sep, old = text.partition("=")
    if not sep or not new.strip() or not old.strip():
        raise argparse.ArgumentTypeError(f"must be NEW=OLD (two study names), got {text!r}")
    return new.strip(), old.strip()


def _at_least(low: int):
    """argparse type: an integer >= low (a bad value exits 2 naming the option, like any argparse error)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {v}")
        return v
    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return v


def _stage(module: str):
    def call(args) -> int:
        import importlib
        return importlib.import_module(f"vgbench.{module}").main(args)
    return call


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vgbench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train one instrumented run into a run directory")
    t.add_argument("config", nargs="?", help="run config YAML (keys of DESIGN.md's vocabulary)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable; task_args.seq_len=100 for nested keys)")
    t.add_argument("--out", required=True, help="run directory to write")
    t.add_argument("--force", action="store_true", help="retrain even if the run is complete")
    t.add_argument("--tag", action="append", default=[], help="W&B tag (repeatable)")
    t.set_defaults(func=_train)

    g = sub.add_parser("grid", help="list the runs a profile expands to")
    g.add_argument("profile", help="configs/<profile>.yaml")
    g.add_argument("--stage", choices=("tune", "final", "all"), default="all")
    g.add_argument("--jobs", action="store_true", help="list Snakemake jobs (stage-study-variant) instead")
    g.set_defaults(func=_grid)

    def stage(name, module, help, named=False):
        """A pipeline stage: `vgbench NAME [ITEM] PROFILE --results DIR`."""
        sp = sub.add_parser(name, help=help)
        if named:
            sp.add_argument("name")
        sp.add_argument("profile", help="configs/<profile>.yaml")
        sp.add_argument("--results", default="results")
        sp.set_defaults(func=_stage(module))
        return sp

    j = stage("run-job", "run_job", "train the missing runs of one pipeline job (stage-study-variant)")
    j.add_argument("--stage", choices=("tune", "final"), required=True)
    j.add_argument("--job", required=True)
    j.add_argument("--selected", help="results/tuning/selected_lr.csv (final stage of tuned studies)")
    stage("select-lr", "select_lr", "pick each condition's lr from the tuning runs")
    stage("aggregate", "aggregate", "run directories -> results/aggregate/{runs,curves}.parquet")
    stage("stats", "stats", "aggregate -> results/stats/*.csv (tests, CIs, effect sizes, claims)")
    stage("theory", "theory", "mean-field predictions vs measured signal -> results/stats/theory.csv")
    stage("figure", "plot", "draw one figure -> results/figures/NAME.{pdf,png}", named=True)
    stage("table", "tables", "write one LaTeX table -> results/tables/NAME.tex", named=True)
    stage("paper", "paper", "build the paper PDF with latexmk from paper/main.tex and the results").add_argument(
        "--out", default="paper/vgbench.pdf")
    stage("manifest", "manifest", "write results/MANIFEST.json (sha256 + provenance of every output)").add_argument(
        "--paper", default="paper/vgbench.pdf")
    stage("wandb-summary", "wandb_summary", "one aggregate W&B run with figures, tables and results")

    stage("status", "status", "runs complete / missing / diverged per study and stage, and the time left").add_argument(
        "--cores", type=_at_least(1), default=2, help="cores the remaining runs share (for the time estimate)")

    vf = sub.add_parser("verify", help="recheck every output against results/MANIFEST.json")
    vf.add_argument("manifest", nargs="?", default="results/MANIFEST.json",
                    help="a MANIFEST.json, or the results folder holding it")
    vf.set_defaults(func=lambda a: __import__("vgbench.manifest", fromlist=["x"]).verify_main(a))

    u = sub.add_parser("unlock-stale", help="remove Snakemake's lock left by a killed run (only if no Snakemake runs here)")
    u.add_argument("workdir", nargs="?", default=".")
    u.set_defaults(func=lambda a: __import__("vgbench.unlock", fromlist=["x"]).main([a.workdir]))

    d = sub.add_parser("diagnose", help="gradient flow of your own model: per-layer norms, a verdict, advice")
    d.add_argument("target", help="pkg.module:factory or path/to/file.py:factory returning an nn.Module")
    d.add_argument("--input-shape", help="one example's shape, e.g. 40 or 3,32,32 (random inputs)")
    d.add_argument("--task", help="use a batch of a vgbench task instead (mnist1d, digits, adding, ...)")
    d.add_argument("--batch", type=_at_least(1), default=64)
    d.add_argument("--seed", type=_at_least(0), default=0, help="torch's seed before the factory builds the model")
    d.add_argument("--steps", type=_at_least(0), default=0, help="also measure after this many SGD steps on the batch")
    d.add_argument("--lr", type=_positive_float, default=0.01)
    d.add_argument("--loss", choices=("xent", "mse"), help="default: cross-entropy for class logits, else MSE")
    d.add_argument("--results", help="a results folder whose claims.csv gives the evidence (default: shipped)")
    d.add_argument("--out", default="diagnose", help="folder for diagnose.json / .pdf / .png")
    d.set_defaults(func=lambda a: __import__("vgbench.diagnose", fromlist=["x"]).main(a))

    pw = sub.add_parser("power", help="the smallest p each claim's test can give with its seeds (before the final runs)")
    pw.add_argument("profile", help="configs/<profile>.yaml")
    pw.add_argument("--pilot", metavar="RESULTS", help="size each claim's seeds from a pilot's runs: a results "
                                                        "folder of the profile's studies on other seeds")
    pw.add_argument("--study", metavar="NEW=OLD", action="append", type=_study_map,
                    help="with --pilot: the pilot's runs of study OLD stand for the profile's study NEW "
                         "(a redesign under a new name; its variants keep their names); repeatable")
    pw.set_defaults(func=lambda a: __import__("vgbench.power", fromlist=["x"]).main(a))

    b = sub.add_parser("bench", help="instrumented Lightning run vs a bare PyTorch loop (steps/s)")
    b.add_argument("--steps", type=_at_least(1), default=2000)
    b.add_argument("--depth", type=_at_least(1), default=None, help="default: 20 (mlp), 4 blocks (transformer)")
    b.add_argument("--width", type=_at_least(1), default=None, help="default: 128 (mlp), 32 (recurrent), 64 (transformer)")
    b.add_argument("--model", choices=("mlp", "rnn", "lstm", "gru", "transformer"), default="mlp")
    b.add_argument("--seq-len", type=_at_least(1), default=100, help="T of the adding task (recurrent models)")
    b.add_argument("--repeats", type=_at_least(1), default=1, help="alternate bare/instrumented this many times")
    b.set_defaults(func=_bench)
    return p


TRAINS = ("train", "run-job")   # the commands that leave an incomplete run directory when stopped
INCOMPLETE = "the run in progress is incomplete (no summary.json) and is retrained when the same command is run again"


class Interrupted(Exception):
    """SIGTERM arrived (scancel, systemd, `kill`): the run in progress stays incomplete."""


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def _silence_logging() -> None:
    import logging
    logging.raiseExceptions = False   # a handler that cannot write stays silent
    for name in ("asyncio", "wandb"):
        logging.getLogger(name).disabled = True


def _quiet_exit() -> None:
    """After a system error (a full disk), Ctrl-C or SIGTERM the message above is the whole story: W&B,
    shutting down at exit and failing to write its own logs on the same disk, printed some 200
    lines of logging errors and asyncio warnings after it. So logging goes quiet at exit (atexit
    runs last-registered first: before W&B's handlers), not in a process that carries on."""
    import atexit
    atexit.register(_silence_logging)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Lightning chains to this handler from its own during fit (and raises a bare SystemExit,
    # exit 0, if it sees the signal first): either way the command must exit 143, not 0.
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        try:
            pin_kernels()   # before anything imports torch
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return args.func(args)
    except ConfigError as e:
        print(f"vgbench {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (Interrupted, SystemExit, KeyboardInterrupt) as e:
        if isinstance(e, SystemExit) and type(e).__name__ != "SIGTERMException":
            raise
        ctrl_c = isinstance(e, KeyboardInterrupt)
        what = INCOMPLETE if args.command in TRAINS else "its outputs may be incomplete: run the same command again"
        how = "\n" * ctrl_c + f"vgbench {args.command}: interrupted {'(Ctrl-C)' if ctrl_c else 'by SIGTERM'}"
        print(f"{how}; {what}", file=sys.stderr)
        _quiet_exit()
        return 130 if ctrl_c else 143
    except FileNotFoundError as e:
        print(f"vgbench {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:   # `vgbench status | head`: the reader has what it wanted; exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # (the docs' recipe: no error at exit)
        return 141
    except OSError as e:   # a full disk, a read-only or vanished folder: the system's error, not a bug
        path = e.filename or getattr(args, "out", None) or getattr(args, "results", None)
        where = f" ({path})" if path else ""
        run = f"; {INCOMPLETE}" if args.command in TRAINS else ""
        print(f"vgbench {args.command}: error: {e.strerror or e}{where}{run}", file=sys.stderr)
        _quiet_exit()
        return 1
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
