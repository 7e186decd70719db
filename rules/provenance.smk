# Provenance: results/{run}/provenance.json records what made the run (git commit and dirty
# flag, the config and its hash, package versions, the device) and the sha256 of every file the
# run wrote. Every rule also carries `code`, a hash of the saesuite sources its script imports
# (saesuite.report.provenance.code_hash), as a param: Snakemake reruns a rule whose params changed, so
# a change to the library code a rule calls reruns it and what depends on it.
from saesuite.report.provenance import code_hash

SCRIPTS = f"{workflow.basedir}/workflow/scripts"
PROVENANCE = f"{RUN}/provenance.json"


rule provenance:
    input:
        # everything rule all asks for (the provenance record itself excepted): this job runs last
        lambda w: [path for path in rules.all.input if path != PROVENANCE],
    output:
        PROVENANCE,
    params:
        config=config,
        run_dir=lambda w, output: str(Path(output[0]).parent),
        code=code_hash(f"{SCRIPTS}/provenance.py"),
    log:
        f"{RUN}/logs/provenance.log",
    benchmark:
        f"{RUN}/benchmarks/provenance.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    script:
        "../workflow/scripts/provenance.py"
