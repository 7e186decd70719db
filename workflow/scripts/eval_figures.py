"""Rule eval_figures: every figure of one SAE's evaluation (the image grids read the split's original images)."""
from pathlib import Path

from saesuite.data.datasets import DatasetSpec, load_dataset
from saesuite.evaluate.evaluation import EvalConfig
from saesuite.evaluate.figures import draw_all
from saesuite.runlog import log_to
from saesuite.schema import stage_options

with log_to(snakemake.log[0]):
    images = load_dataset(DatasetSpec.from_config(snakemake.params.dataset), snakemake.params.split)
    draw_all(
        Path(snakemake.input.metrics).parent, images, dict(snakemake.output.items()),
        f"{snakemake.wildcards.model} SAE, {snakemake.params.split} split",
        EvalConfig(**stage_options("evaluate", snakemake.params.evaluate)).grid_latents, snakemake.params.seed,
    )
