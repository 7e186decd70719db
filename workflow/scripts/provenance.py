"""Rule provenance: results/{run}/provenance.json (see saesuite.provenance)."""
from saesuite.provenance import build_provenance, write_provenance
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    config = snakemake.params.config
    devices = {stage: config[stage]["device"] for stage in ("cache", "train", "evaluate", "compare")
               if isinstance(config.get(stage), dict) and "device" in config[stage]}
    # its own log and benchmark are still being written: they are the only files left out
    record = build_provenance(config, snakemake.params.run_dir, snakemake.params.workflow_dir, devices,
                              exclude=(snakemake.output[0], snakemake.log[0], f"{snakemake.params.run_dir}/benchmarks/provenance.tsv"))
    write_provenance(record, snakemake.output[0])
    print(f"{len(record['outputs'])} output files hashed; commit {record['git']['commit']}, dirty {record['git']['dirty']}")
