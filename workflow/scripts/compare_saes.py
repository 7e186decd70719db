"""Rule compare_saes: every cross-model score of the two models over the eval split."""
from pathlib import Path

from saesuite.compare.saes import compare_saes
from saesuite.compare.features import CompareSettings
from saesuite.runlog import log_to
from saesuite.schema import stage_options

with log_to(snakemake.log[0]):
    cfg, inp = snakemake.params.compare, snakemake.input
    settings = CompareSettings(**stage_options("compare", cfg), seed=snakemake.params.seed)
    compare_saes(
        Path(inp.cache_a).parent, Path(inp.sae_a).parent, Path(inp.cache_b).parent, Path(inp.sae_b).parent,
        Path(snakemake.output.comparison).parent, device=cfg["device"], settings=settings,
        seed_saes_a=[Path(p).parent for p in inp.seed_saes_a], seed_saes_b=[Path(p).parent for p in inp.seed_saes_b],
        workers=snakemake.threads,
    )
