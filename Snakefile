# vgbench: one command from a profile to the paper.
#   snakemake --cores 2 --configfile configs/smoke.yaml
# The profile is read from the file named by the last --configfile (default
# configs/default.yaml) by vgbench.grid, not from Snakemake's merged `config`, so a
# smoke run never inherits the default profile's studies.
import os

configfile: os.path.join(workflow.basedir, "configs/default.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/tables.smk"

report: "workflow/report/workflow.rst"


rule all:
    input:
        f"{R}/aggregate/runs.parquet",
        f"{R}/aggregate/curves.parquet",
        STATS,
        expand(f"{R}/figures/{{name}}.{{ext}}", name=FIGURES, ext=("pdf", "png")),
        expand(f"{R}/tables/{{name}}.tex", name=TABLES),
    default_target: True
