"""Rule paper_numbers: LaTeX macros of every number and claim the paper states, and its tables."""
from saesuite.report.paper import PaperResults, write_paper_numbers
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    results = PaperResults.of_rule(snakemake.input, dict(params.roles), dict(params.config))
    write_paper_numbers(results, snakemake.output.numbers)
