# All run directories -> results/aggregate/{runs,curves}.parquet


rule aggregate:
    input:
        lambda wc: [marker("final", j) for j in final_jobs()],
    output:
        runs=f"{R}/aggregate/runs.parquet",
        curves=f"{R}/aggregate/curves.parquet",
    log:
        f"{R}/logs/aggregate.log",
    params:
        profile=PROFILE,
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "{VG} aggregate {params.profile} --results {R} > {log} 2>&1"
