"""Rule planted_recovery: how well each SAE's decoder recovers the planted dictionary."""
from pathlib import Path

from saesuite.sae.recovery import write_recovery_report
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    dirs = [Path(p).parent for p in [snakemake.input.main, *snakemake.input.sweep]]
    write_recovery_report(snakemake.input.dictionary, dict(zip(snakemake.params.names, dirs)), snakemake.output[0])
