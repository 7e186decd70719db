"""Rules train_sae and train_seed_sae: a model's SAE and its sweep, trained together from one read
of the cache (train_seed_sae: one SAE with the main settings and another seed, no sweep)."""
from pathlib import Path

from saesuite.runlog import log_to
from saesuite.sae.config import TrainConfig
from saesuite.sae.train import train_saes

with log_to(snakemake.log[0]):
    options = {**snakemake.params.train, "seed": int(snakemake.params.seed)}
    out = Path(snakemake.output.cfg).parent
    main = TrainConfig.from_dict(options)
    runs = [(out, main)] + [(out / "sweep" / name, cfg) for name, cfg in main.sweep(options, snakemake.params.sweep)]
    train_saes(Path(snakemake.input.cache).parent, runs)
