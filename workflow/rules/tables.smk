# One rule per LaTeX table (booktabs), plus numbers.tex: macros for every number in prose.
from vgbench.tables import NAMES as TABLES


for name in TABLES:
    rule:
        localrule: True
        name:
            f"write_{name}"
        input:
            AGGREGATES,
            STATS,
            [THEORY] if name in paths.USES_THEORY else [],
        output:
            report(str(paths.table(name, R)), caption=f"../report/table.rst", category="Tables"),
        conda:
            ENV
        log:
            f"{R}/logs/tables/{name}.log",
        params:
            profile=PROFILE,
            vg=VG,
            results=lambda wc, output: results_of(output[0]),
            name=name,
        resources:
            mem_mb=2000,
            runtime=10,
        shell:
            "{params.vg} table {params.name} {params.profile:q} --results {params.results:q} > {log:q} 2>&1"

