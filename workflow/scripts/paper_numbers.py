"""Rule paper_numbers: LaTeX macros for every number the paper quotes."""
import yaml

from saesuite.paper import write_numbers
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    inp = snakemake.input
    metrics = {"A": inp.metrics_a, "B": inp.metrics_b, **{"R": path for path in inp.metrics_replication}}
    published = yaml.safe_load(open(inp.baseline))
    write_numbers(metrics, inp.comparison, snakemake.output[0], published)
