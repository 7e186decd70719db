"""Rule planted_dictionary_recovery: the SAEs of the planted-dictionary config (its main SAE and
sweep), trained on its synthetic activations in a scratch folder, scored on how well their decoder
rows recover the planted directions."""
from pathlib import Path

from saesuite.runlog import log_to
from saesuite.sae.recovery import planted_dictionary_recovery
from saesuite.schema import load_config

with log_to(snakemake.log[0]):
    log = Path(snakemake.log[0]).with_suffix(".schema.log")  # jsonschema's full report, if the config fails
    planted_dictionary_recovery(load_config(snakemake.input.config, snakemake.params.schema, log), snakemake.output[0])
