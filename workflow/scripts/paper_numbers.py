"""Rule paper_numbers: LaTeX macros for every number the paper quotes."""
from saesuite.paper import write_numbers
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    write_numbers(
        {"A": snakemake.input.metrics_a, "B": snakemake.input.metrics_b}, snakemake.input.comparison, snakemake.output[0]
    )
