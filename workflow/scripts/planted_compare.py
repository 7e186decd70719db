"""Rule planted_compare: the planted two-model benchmark of the comparison, from its own config file."""
from pathlib import Path

import pandas as pd
import yaml

from saesuite.compare import figures as compare_figures
from saesuite.files import write_json_atomic
from saesuite.compare.planted_pairs import run_planted_config
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    result, sweep = run_planted_config(yaml.safe_load(Path(snakemake.input.config).read_text()))
    pd.DataFrame(sweep).to_csv(snakemake.output.sweep, index=False)
    write_json_atomic(Path(snakemake.output.result), result | {"sweep": sweep})
    compare_figures.planted_sweep(snakemake.output.sweep, snakemake.output.figure)
