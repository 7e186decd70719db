"""Rule provenance: results/{run}/provenance.json (see saesuite.report.provenance)."""
from saesuite.report.provenance import build_provenance, write_provenance
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    config = snakemake.params.config
    run_dir = snakemake.params.run_dir
    devices = {stage: config[stage]["device"] for stage in ("cache", "train", "evaluate", "compare")
               if isinstance(config.get(stage), dict) and "device" in config[stage]}
    # the git state of the work tree that holds this script (the workflow's), if any; the
    # record's own log and benchmark are still being written: the only files left out
    own = (snakemake.output[0], snakemake.log[0], f"{run_dir}/benchmarks/provenance.tsv")
    record = build_provenance(config, run_dir, snakemake.scriptdir, devices, exclude=own)
    write_provenance(record, snakemake.output[0])
    print(f"{len(record['outputs'])} files hashed; commit {record['git']['commit']}, dirty {record['git']['dirty']}")
