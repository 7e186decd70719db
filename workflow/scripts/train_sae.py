"""Rules train_sae and train_seed_sae: a model's SAE and its sweep, trained together from one read
of the cache (train_seed_sae: one SAE with the main settings and another seed, no sweep)."""
from pathlib import Path

from saesuite.runlog import log_to
from saesuite.sae.train import TrainConfig, train_saes

with log_to(snakemake.log[0]):
    options = {**snakemake.params.train, "seed": int(snakemake.params.seed)}
    out = Path(snakemake.output.cfg).parent
    runs = [(out, TrainConfig.from_dict(options))]
    for entry in snakemake.params.sweep:
        overrides = {k: v for k, v in entry.items() if k != "name"}
        runs.append((out / "sweep" / entry["name"], TrainConfig.from_dict({**options, **overrides})))
    train_saes(Path(snakemake.input.cache).parent, runs)
