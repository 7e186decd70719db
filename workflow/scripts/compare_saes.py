"""Rule compare_saes: top-k overlap and CKA of the two models over the eval split."""
from pathlib import Path

from saesuite.compare import compare_saes
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    cfg, inp = snakemake.params.compare, snakemake.input
    compare_saes(
        Path(inp.cache_a).parent, Path(inp.sae_a).parent, Path(inp.cache_b).parent, Path(inp.sae_b).parent,
        Path(snakemake.output.comparison).parent, k=cfg["k"], device=cfg["device"],
    )
