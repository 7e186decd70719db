"""Rule explorer: the static feature-explorer site of the two compared SAEs, from their evaluations and comparison."""
from pathlib import Path

from saesuite.data.datasets import DatasetSpec, load_dataset
from saesuite.report.explorer import ExplorerConfig, ModelInputs, build_explorer
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    inp = snakemake.input
    models = tuple(ModelInputs(name, Path(metrics).parent) for name, metrics in zip(snakemake.params.names, inp.metrics))
    dataset = load_dataset(DatasetSpec.from_config(snakemake.params.dataset), snakemake.params.split)
    record = build_explorer(models, Path(inp.comparison).parent, lambda i: dataset[i][0], snakemake.output[0],
                            ExplorerConfig(workers=snakemake.threads))
    print(f"explorer: {record['total_bytes'] / 1e6:.2f} MB, {record['thumbnails']} thumbnails")
