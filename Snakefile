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
include: "workflow/rules/paper.smk"

report: "workflow/report/workflow.rst"


localrules:
    all,


rule all:
    input:
        AGGREGATES,
        STATS,
        FIGURE_FILES,
        TABLE_FILES,
        [PAPER] if HAVE_LATEX else [],
        MANIFEST,
    default_target: True
