"""Rule planted_dictionary_recovery: the SAEs of the planted-dictionary config (its main SAE and
sweep), trained on its synthetic activations in a scratch folder, scored on how well their decoder
rows recover the planted directions."""
import tempfile
from pathlib import Path

import yaml

from saesuite.cache.planted import PlantedSpec, write_planted_cache, write_recovery_report
from saesuite.runlog import log_to
from saesuite.sae.train import TrainConfig, train_saes

with log_to(snakemake.log[0]):
    config = yaml.safe_load(open(snakemake.input.config))
    options = dict(config["planted"])
    n_train = options.pop("n_train")
    options.pop("n_eval", None)
    shards = options.pop("shards", 2)
    train = {**config["train"], "seed": config.get("seed", 0)}
    sweep = train.pop("sweep", [])
    train.pop("extra_seeds", None)
    with tempfile.TemporaryDirectory(prefix="planted-recovery-") as scratch:
        scratch = Path(scratch)
        write_planted_cache(PlantedSpec(**options), scratch / "cache", n_train, "train", n_shards=shards)
        runs = [("main", TrainConfig.from_dict(train))]
        runs += [(e["name"], TrainConfig.from_dict({**train, **{k: v for k, v in e.items() if k != "name"}})) for e in sweep]
        train_saes(scratch / "cache", [(scratch / "sae" / name, cfg) for name, cfg in runs])
        write_recovery_report(scratch / "cache" / "dictionary.npy", {name: scratch / "sae" / name for name, _ in runs},
                              snakemake.output[0])
