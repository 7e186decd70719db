"""Checkpoint paper_sources: LaTeX macros that name the rule and file behind each number, table and
figure, and the run's record (provenance.json) for the reproducibility appendix."""
from saesuite.report.paper_sources import write_sources
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    p = snakemake.params
    write_sources(p.run, p.pair, p.models, p.figures, snakemake.output[0], figure_rules=p.figure_rules,
                  provenance=snakemake.input.provenance, tables=p.tables)
