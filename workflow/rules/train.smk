# Tuning on the validation split, lr selection (checkpoint), final seeds.


rule tune_job:
    output:
        marker("tune", "{job}"),
    conda:
        ENV
    log:
        f"{R}/logs/tune/{{job}}.log",
    params:
        profile=PROFILE,
        vg=VG,
        results=lambda wc, output: results_of(output[0]),
    threads: 1
    priority: lambda wc: job_priority("tune", wc.job)
    resources:
        mem_mb=2000,
        runtime=120,
    shell:
        "VGBENCH_THREADS=1 {params.vg} run-job {params.profile:q} --stage tune --job {wildcards.job} "
        "--results {params.results:q} > {log:q} 2>&1"


checkpoint select_lr:
    localrule: True
    input:
        [marker("tune", j) for j in TUNE_JOBS],
    output:
        SELECTED,
    conda:
        ENV
    log:
        f"{R}/logs/select_lr.log",
    params:
        profile=PROFILE,
        vg=VG,
        results=lambda wc, output: results_of(output[0]),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.vg} select-lr {params.profile:q} --results {params.results:q} > {log:q} 2>&1"


rule train_job:
    input:
        rules.select_lr.output,
    output:
        marker("final", "{job}"),
    conda:
        ENV
    log:
        f"{R}/logs/final/{{job}}.log",
    params:
        profile=PROFILE,
        vg=VG,
        results=lambda wc, output: results_of(output[0]),
    threads: 1
    priority: lambda wc: job_priority("final", wc.job)
    resources:
        mem_mb=2000,
        runtime=240,
    shell:
        "VGBENCH_THREADS=1 {params.vg} run-job {params.profile:q} --stage final --job {wildcards.job} "
        "--results {params.results:q} --selected {input:q} > {log:q} 2>&1"
