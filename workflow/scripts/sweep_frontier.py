"""Rule sweep_frontier: L0 and explained variance of every SAE of a model's sweep on the eval split."""
from pathlib import Path

from saesuite.evaluate.frontier import frontier_table
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    dirs = [Path(snakemake.input.main).parent] + [Path(p).parent for p in snakemake.input.sweep]
    table = frontier_table(dict(zip(snakemake.params.names, dirs)), Path(snakemake.input.cache).parent,
                           device=snakemake.params.device)
    table.to_csv(snakemake.output[0], index=False)
    print(table.to_string())
