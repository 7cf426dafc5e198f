# Statistics and the mean-field theory overlay (no plotting here).

STATS = [str(paths.stats(n, R)) for n in paths.STATS_TABLES]


rule compute_stats:
    localrule: True
    input:
        AGGREGATES,
    output:
        STATS,
    conda:
        ENV
    log:
        f"{R}/logs/stats.log",
    params:
        profile=PROFILE,
        vg=VG,
        results=lambda wc, output: results_of(output[0]),
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "{params.vg} stats {params.profile:q} --results {params.results:q} > {log:q} 2>&1"


rule compute_theory:
    localrule: True
    input:
        AGGREGATES,
    output:
        THEORY,
    conda:
        ENV
    log:
        f"{R}/logs/theory.log",
    params:
        profile=PROFILE,
        vg=VG,
        results=lambda wc, output: results_of(output[0]),
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "{params.vg} theory {params.profile:q} --results {params.results:q} > {log:q} 2>&1"
