"""Rule train_sae: train one SAE on the train split's cache."""
from pathlib import Path

from saesuite.runlog import log_to
from saesuite.train import TrainConfig, train_sae

with log_to(snakemake.log[0]):
    cfg = TrainConfig.from_dict({**snakemake.params.train, "seed": snakemake.params.seed})
    train_sae(Path(snakemake.input.cache).parent, Path(snakemake.output.cfg).parent, cfg)
