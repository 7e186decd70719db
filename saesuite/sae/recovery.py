"""How well trained SAEs recover a planted dictionary: the report of the planted rules, and the
paper's planted appendix (:func:`planted_dictionary_recovery`: train on a planted cache, then score).

The planted data and the score itself (:func:`saesuite.cache.planted.recovery`) belong to the cache
layer; reading the SAEs is this layer's, through :func:`saesuite.sae.model.load_sae`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from saesuite.cache.planted import PlantedSpec, recovery, write_planted_cache
from saesuite.files import write_json_atomic
from saesuite.sae.config import TrainConfig
from saesuite.sae.model import load_sae
from saesuite.sae.train import train_saes
from saesuite.schema import stage_options


def write_recovery_report(dictionary: str | Path, sae_dirs: dict[str, str | Path], out: str | Path) -> dict:
    """Recovery of each named SAE against the planted dictionary (``dictionary.npy``), written as one JSON."""
    true = np.load(dictionary)
    report = {}
    for name, path in sae_dirs.items():
        sae, cfg = load_sae(path)
        result = recovery(true, sae.W_dec.detach().numpy())
        del result["best_cosine"]
        report[name] = {"architecture": sae.variant.name, "k": cfg["k"],
                        "l1_coefficient": cfg["training"]["l1_coefficient"], **result}
    write_json_atomic(Path(out), report)
    return report


def planted_dictionary_recovery(config: dict, out: str | Path) -> dict:
    """The SAEs of a planted-dictionary ``config`` (checked against the schema: its main SAE and
    sweep), trained on its synthetic activations in a scratch folder, scored by
    :func:`write_recovery_report` into ``out``."""
    planted = config["planted"]
    options = {**stage_options("train", config["train"]), "seed": config["seed"]}
    main = TrainConfig.from_dict(options)
    runs = [("main", main), *main.sweep(options, config["train"]["sweep"])]
    with tempfile.TemporaryDirectory(prefix="planted-recovery-") as scratch:
        scratch = Path(scratch)
        write_planted_cache(PlantedSpec(**stage_options("planted", planted)), scratch / "cache", planted["n_train"],
                            "train", n_shards=planted["shards"])
        train_saes(scratch / "cache", [(scratch / "sae" / name, cfg) for name, cfg in runs])
        return write_recovery_report(scratch / "cache" / "dictionary.npy",
                                     {name: scratch / "sae" / name for name, _ in runs}, out)
