"""Rule train_sae: a model's SAE and its sweep, trained together from one read of the cache."""
from pathlib import Path

from saesuite.runlog import log_to
from saesuite.train import TrainConfig, train_saes

with log_to(snakemake.log[0]):
    options = {k: v for k, v in snakemake.params.train.items() if k != "sweep"}
    out = Path(snakemake.output.cfg).parent
    runs = [(out, TrainConfig.from_dict({**options, "seed": snakemake.params.seed}))]
    for entry in snakemake.params.train.get("sweep", []):
        overrides = {k: v for k, v in entry.items() if k != "name"}
        runs.append((out / "sweep" / entry["name"], TrainConfig.from_dict({**options, **overrides, "seed": snakemake.params.seed})))
    train_saes(Path(snakemake.input.cache).parent, runs)
