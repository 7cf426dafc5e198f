"""`vgbench paper PROFILE`: build paper/vgbench.pdf from paper/main.tex with latexmk.

The LaTeX sources are copied into <results>/paper_build with a generated paths.tex that
points \\vgresults at the results folder (as `..`, whatever characters its path holds), so the
same main.tex builds from any results tree. Without latexmk it says how to install it and exits
3 (the Snakefile then leaves the paper out of the targets, so the rest of the pipeline still
completes).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from vgbench import paths
from vgbench.provenance import atomic_write, blank_in

INSTALL = ("latexmk not found: the paper stage needs a LaTeX installation. On Debian/Ubuntu: "
           "sudo apt-get install texlive-latex-base texlive-latex-recommended texlive-latex-extra "
           "latexmk texlive-fonts-recommended")
SOURCES = Path(__file__).resolve().parents[1] / "paper"


def main(args) -> int:
    if shutil.which("latexmk") is None:
        print(f"vgbench paper: {INSTALL}")
        return 3
    res = paths.require(args.results, "figure and table stages").resolve()
    build = paths.paper_build(res)
    build.mkdir(parents=True, exist_ok=True)
    for f in ("main.tex", "vgbench.bib"):
        shutil.copy2(SOURCES / f, build / f)
    # the results folder relative to the build folder inside it: a folder name with #, %, { or ~
    # in it would break LaTeX if written out
    (build / "paths.tex").write_text("\\newcommand{\\vgresults}{..}\n")
    # the figures with data in this profile: main.tex shows a figure, and the paragraph about it,
    # only where its \vgshown@<name> is defined (a blank one said "no data in this profile")
    shown = sorted(f.stem for f in (res / "figures").glob("*.png") if not blank_in(f))
    (build / "shown.tex").write_text("".join(f"\\expandafter\\def\\csname vgshown@{n}\\endcsname{{}}\n"
                                             for n in shown) + ("\\def\\vgshownany{}\n" if shown else ""))
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-jobname=vgbench", "main.tex"]
    p = subprocess.run(cmd, cwd=build, capture_output=True, text=True)
    if p.returncode != 0:
        log = build / "vgbench.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else p.stdout[-3000:]
        print(f"vgbench paper: latexmk failed (exit {p.returncode}); end of the LaTeX log:\n{tail}")
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:     # a kill mid-copy leaves the previous paper, not half of one
        shutil.copy2(build / "vgbench.pdf", tmp)
    print(f"paper: {out}")
    return 0
