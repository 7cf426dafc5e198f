# The paper (latexmk; left out of the targets with a clear message if absent), the W&B
# summary run and, last, the manifest of every output.
import shutil

HAVE_LATEX = shutil.which("latexmk") is not None
# The default results folder builds the paper at DESIGN.md's paper/vgbench.pdf; any other
# (e.g. `make smoke`'s results/smoke) builds its own <results>/vgbench.pdf, so a smoke run
# never overwrites the default profile's paper.
PAPER = "paper/vgbench.pdf" if os.path.normpath(R) == "results" else f"{R}/vgbench.pdf"
FIGURE_FILES = expand(f"{R}/figures/{{name}}.{{ext}}", name=FIGURES, ext=("pdf", "png"))
TABLE_FILES = expand(f"{R}/tables/{{name}}.tex", name=TABLES)
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
        "{params.vg} paper {params.profile} --results {params.results} --out {output} > {log} 2>&1"


rule log_wandb_summary:
    localrule: True
    input:
        FIGURE_FILES,
        TABLE_FILES,
        STATS,
    output:
        f"{R}/wandb_summary.json",
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
        "{params.vg} wandb-summary {params.profile} --results {params.results} > {log} 2>&1"


rule write_manifest:
    localrule: True
    input:
        FIGURE_FILES,
        TABLE_FILES,
        STATS,
        f"{R}/wandb_summary.json",
        [PAPER] if HAVE_LATEX else [],
    output:
        f"{R}/MANIFEST.json",
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
        "{params.vg} manifest {params.profile} --results {params.results} --paper {params.paper} > {log} 2>&1"
