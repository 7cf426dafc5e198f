# All run directories -> results/aggregate/{runs,curves}.parquet


rule aggregate:
    localrule: True
    input:
        lambda wc: [marker("final", j) for j in final_jobs()],
        # written before the DAG is built (common.smk); absent only in a dry run on a new folder
        lambda wc: [CODE_STAMP] if Path(CODE_STAMP).exists() else [],
    output:
        runs=AGGREGATES[0],
        curves=AGGREGATES[1],
        jobs=AGGREGATES[2],
    conda:
        ENV
    log:
        f"{R}/logs/aggregate.log",
    params:
        profile=PROFILE,
        vg=VG,
        results=lambda wc, output: results_of(output[0]),
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "{params.vg} aggregate {params.profile:q} --results {params.results:q} > {log:q} 2>&1"

