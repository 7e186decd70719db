"""Rule paper_pdf: the table of wall time per rule from the run's benchmark files, then the PDF.

latexmk compiles a copy of paper/main.tex in the run's paper folder, beside numbers.tex,
sources.tex and tables/; the section files and the bibliography are read from paper/ itself
(TEXINPUTS, BIBINPUTS), and latexmk runs BibTeX as the .bib requires.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from saesuite.report.paper_sources import write_timings
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    inp, params = snakemake.input, snakemake.params
    paper = Path(snakemake.output[0]).parent
    write_timings(list(inp.benchmarks), dict(params.benchmark_rules), paper / "main-timings.tex", params.run)
    shutil.copy(inp.tex, paper / "main.tex")
    source = Path(inp.tex).resolve().parent
    env = {**os.environ, "TEXINPUTS": f".:{source}:", "BIBINPUTS": f".:{source}:"}
    sys.stdout.flush()
    subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
                   cwd=paper, env=env, check=True, stdout=sys.stdout, stderr=sys.stdout)
