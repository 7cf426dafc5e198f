# The paper (latexmk; left out of the targets with a clear message if absent), the W&B
# summary run and, last, the manifest of every output.
import shutil

HAVE_LATEX = shutil.which("latexmk") is not None
WANDB_SUMMARY = str(paths.wandb_summary(R))
MANIFEST = str(paths.manifest(R))
PAPER = paths.paper(R)  # paper/vgbench.pdf, or <results>/vgbench.pdf for another results folder
FIGURE_FILES = [str(paths.figure(n, e, R)) for n in FIGURES for e in ("pdf", "png")]
TABLE_FILES = [str(paths.table(n, R)) for n in TABLES]
if not HAVE_LATEX:
    print("vgbench: latexmk not found, so the paper stage is skipped (everything else runs). To build "
          f"{PAPER}: sudo apt-get install texlive-latex-base texlive-latex-recommended "
          "texlive-latex-extra latexmk texlive-fonts-recommended", file=sys.stderr)


rule build_paper:
    localrule: True
    input:
        FIGURE_FILES,
        TABLE_FILES,
        tex="paper/main.tex" if os.path.exists("paper/main.tex") else os.path.join(workflow.basedir, "paper/main.tex"),
    output:
        PAPER,
    conda:
        ENV
    log:
        f"{R}/logs/paper.log",
    params:
        profile=PROFILE,
        vg=VG,
        results=lambda wc, input: results_of(input[0]),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.vg} paper {params.profile:q} --results {params.results:q} --out {output:q} > {log:q} 2>&1"


rule log_wandb_summary:
    localrule: True
    input:
        FIGURE_FILES,
        TABLE_FILES,
        STATS,
    output:
        WANDB_SUMMARY,
    conda:
        ENV
    log:
        f"{R}/logs/wandb_summary.log",
    params:
        profile=PROFILE,
        vg=VG,
        results=lambda wc, output: results_of(output[0]),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.vg} wandb-summary {params.profile:q} --results {params.results:q} > {log:q} 2>&1"


rule write_manifest:
    localrule: True
    input:
        FIGURE_FILES,
        TABLE_FILES,
        STATS,
        WANDB_SUMMARY,
        [PAPER] if HAVE_LATEX else [],
    output:
        MANIFEST,
    conda:
        ENV
    log:
        f"{R}/logs/manifest.log",
    params:
        profile=PROFILE,
        vg=VG,
        results=lambda wc, output: results_of(output[0]),
        paper=lambda wc: PAPER,
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.vg} manifest {params.profile:q} --results {params.results:q} --paper {params.paper:q} > {log:q} 2>&1"
