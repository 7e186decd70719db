"""Rule planted_cache: a cache of synthetic activations from a known sparse dictionary."""
from pathlib import Path

from saesuite.cache.planted import PlantedSpec, write_planted_cache
from saesuite.runlog import log_to
from saesuite.schema import stage_options

with log_to(snakemake.log[0]):
    planted, split = snakemake.params.planted, snakemake.wildcards.split
    n = planted["n_train"] if split == "train" else planted["n_eval"]
    out = Path(snakemake.output.manifest).parent
    write_planted_cache(PlantedSpec(**stage_options("planted", planted)), out, n, split, n_shards=planted["shards"])
