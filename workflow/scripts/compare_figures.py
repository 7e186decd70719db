"""Rule compare_figures: overlap against chance, similarity bars, image grids of matched and unpaired features."""
from pathlib import Path

import numpy as np

from saesuite.compare import figures as compare_figures
from saesuite.data.datasets import DatasetSpec, load_dataset
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    compare_dir = Path(snakemake.input.comparison).parent
    out = {Path(p).stem: p for p in snakemake.output}
    compare_figures.overlap_against_chance(compare_dir, out["overlap_vs_chance"])
    compare_figures.similarity_bars(snakemake.input.comparison, out["similarity"])
    dataset = load_dataset(DatasetSpec.from_config(snakemake.params.dataset), snakemake.params.split)
    classes = list(getattr(dataset, "classes", []))
    compare_figures.pair_grids(compare_dir, lambda i: np.asarray(dataset[i][0]), out["best_pairs"], out["unpaired"],
                               tuple(snakemake.params.names),
                               label=lambda i: classes[dataset[i][1]] if classes else str(dataset[i][1]))
