"""`vgbench figure NAME PROFILE`: draw one figure from the results tree, stamped with its
provenance (figure, git commit, profile name and hash) in the PDF/PNG metadata."""
from __future__ import annotations

import importlib

from vgbench.config import ConfigError
from vgbench import paths


def main(args) -> int:
    from vgbench import grid
    from vgbench.figures import NAMES, load_frames, style
    from vgbench.provenance import git_commit
    if args.name not in NAMES:
        raise ConfigError(f"unknown figure {args.name!r}; figures: {', '.join(NAMES)}")
    prof = grid.load_profile(args.profile)
    paths.require(args.results, *paths.drawn_from(args.name), profile=prof)
    style.apply()
    fig = importlib.import_module(f"vgbench.figures.{args.name}").make(load_frames(args.results, prof.report))
    out = paths.figure(args.name, "pdf", args.results).parent
    out.mkdir(parents=True, exist_ok=True)
    files = style.save(fig, str(out / args.name), {"figure": args.name, "commit": git_commit(),
                                                   "profile": prof.name, "profile_hash": prof.hash})
    print(f"figure {args.name}: {', '.join(files)}")
    return 0
