"""Rule cache_shard: one shard of one model's activations over one split (past its images, cache.synthetic's rows)."""
from pathlib import Path

from saesuite.models.backbones import load_backbone
from saesuite.cache.planted import SyntheticRows
from saesuite.cache.writer import cache_shard
from saesuite.data.datasets import DatasetSpec, load_dataset
from saesuite.runlog import log_to
from saesuite.schema import stage_options

with log_to(snakemake.log[0]):
    model, data, cache = snakemake.params.model, snakemake.params.dataset, snakemake.params.cache
    dataset = load_dataset(DatasetSpec.from_config(data), snakemake.wildcards.split)  # fails fast if missing
    backbone = load_backbone(model["name"], model["pretrained"], model["hook"], init_seed=snakemake.params.init_seed)
    cache_shard(
        backbone, dataset, Path(snakemake.output.shard).parent, int(snakemake.wildcards.index), snakemake.params.n_shards,
        dataset_name=data["kind"], split=snakemake.wildcards.split, limit=data["limit"],
        synthetic=SyntheticRows.from_config(cache.get("synthetic"), snakemake.wildcards.split, model["name"]),
        **stage_options("cache", cache),
    )
