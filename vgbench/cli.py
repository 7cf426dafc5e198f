"""The `vgbench` command line: one subcommand per pipeline stage.

Every subcommand validates its input before doing any work; invalid input exits with
code 2 and a message naming the problem. Heavy imports (torch, Lightning) happen only
after validation, so a bad config fails in well under a second.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vgbench.config import ConfigError, from_file


def _train(args) -> int:
    cfg = from_file(args.config, args.set)
    out = Path(args.out)
    if (out / "summary.json").is_file() and not args.force:
        raise ConfigError(f"{out} already holds a complete run; pass --force to retrain it")
    from vgbench.train import run
    s = run(cfg, out, force=args.force, tags=tuple(args.tag))
    metric = "test/acc" if "test/acc" in s["final"] else "test/loss"
    print(f"{out}: {s['status']} after {s['steps']} steps, {metric} = {s['final'].get(metric)}, "
          f"grad_ratio_init = {s['grad_ratio_init']:.3g}, {s['wall_s']:.1f} s")
    return 0


def _bench(args) -> int:
    from vgbench.bench import main as bench_main
    return bench_main(args)


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

    b = sub.add_parser("bench", help="instrumented Lightning run vs a bare PyTorch loop (steps/s)")
    b.add_argument("--steps", type=int, default=2000)
    b.add_argument("--depth", type=int, default=20)
    b.add_argument("--width", type=int, default=128)
    b.add_argument("--repeats", type=int, default=1, help="alternate bare/instrumented this many times")
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"vgbench {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
