"""Rule planted_cache: a cache of synthetic activations from a known sparse dictionary."""
from pathlib import Path

from saesuite.cache.planted import PlantedSpec, write_planted_cache
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    options = dict(snakemake.params.planted)
    n_train, n_eval, shards = options.pop("n_train"), options.pop("n_eval"), options.pop("shards", 2)
    split = snakemake.wildcards.split
    out = Path(snakemake.output.manifest).parent
    write_planted_cache(PlantedSpec(**options), out, n_train if split == "train" else n_eval, split, n_shards=shards)
