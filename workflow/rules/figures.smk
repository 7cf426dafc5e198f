# One rule per figure (showyourwork's one script <-> one rule <-> one output), all drawn by
# `vgbench figure NAME`, each registered in the HTML report with its caption.
from vgbench.figures import CAPTIONS, NAMES as FIGURES


for name in FIGURES:
    rule:
        localrule: True
        name:
            f"plot_{name}"
        input:
            AGGREGATES,
            STATS,
            [THEORY] if name in paths.USES_THEORY else [],
        output:
            pdf=str(paths.figure(name, "pdf", R)),
            png=report(str(paths.figure(name, "png", R)), caption=f"../report/{name}.rst", category="Figures"),
        conda:
            ENV
        log:
            f"{R}/logs/figures/{name}.log",
        params:
            profile=PROFILE,
            vg=VG,
            results=lambda wc, output: results_of(output[0]),
            name=name,
        resources:
            mem_mb=4000,
            runtime=10,
        shell:
            "{params.vg} figure {params.name} {params.profile:q} --results {params.results:q} > {log:q} 2>&1"

