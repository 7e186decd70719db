"""Rules figure_*: one figure from one stage's files (params.kind says which)."""
from saesuite import figures
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    kind, out = snakemake.params.kind, snakemake.output[0]
    if kind == "lifetime_sparsity":
        figures.lifetime_sparsity_histogram(snakemake.input.latents, out, snakemake.params.title)
    elif kind == "training_curve":
        figures.training_curve(snakemake.input.log, out, snakemake.params.title)
    elif kind == "frontier":
        figures.frontier(list(snakemake.input), out)
    elif kind == "compare_sweep":
        figures.compare_sweep(snakemake.input[0], out, snakemake.params.names)
    else:
        raise ValueError(f"unknown figure kind {kind!r}")
