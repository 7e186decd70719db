"""Rule figure_feature_map: both models' features on one map, coloured by model and by top class."""
from pathlib import Path

from saesuite.compare.figures import feature_map_figure
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    feature_map_figure(Path(snakemake.input.table).parent, snakemake.output[0])
