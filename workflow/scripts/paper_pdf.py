"""Rule paper_pdf: the table of wall time per rule from the run's benchmark files, then the PDF
(latexmk on a copy of paper/main.tex in the run's paper folder)."""
from pathlib import Path

from saesuite.report.paper_sources import compile_pdf, write_timings
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    inp, params = snakemake.input, snakemake.params
    paper = Path(snakemake.output[0]).parent
    write_timings(list(inp.benchmarks), dict(params.benchmark_rules), paper / "main-timings.tex", params.run)
    compile_pdf(inp.tex, paper)
