"""Rule evaluate_sae: metrics of one SAE over the eval split's cache, and its zero-shot fidelity on the images."""
from pathlib import Path

from saesuite.data.datasets import DatasetSpec
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.runlog import log_to
from saesuite.schema import stage_options

with log_to(snakemake.log[0]):
    evaluate_sae(
        Path(snakemake.input.sae).parent,
        Path(snakemake.input.cache).parent,
        Path(snakemake.output.metrics).parent,
        EvalConfig(**stage_options("evaluate", snakemake.params.evaluate)),
        DatasetSpec.from_config(snakemake.params.dataset),
    )
