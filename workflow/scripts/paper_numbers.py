"""Rule paper_numbers: LaTeX macros of every number and claim the paper states, and its tables."""
import yaml

from saesuite.report.paper import PaperResults, write_paper_numbers
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    inp, params = snakemake.input, snakemake.params
    roles = list(params.roles)  # A, B and (with a replication) R, in the order of the cfgs and manifests
    metrics = {"A": inp.metrics_a, "B": inp.metrics_b, **{"R": path for path in inp.metrics_replication}}
    write_paper_numbers(
        PaperResults(
            metrics=metrics,
            comparison=inp.comparison,
            published=yaml.safe_load(open(inp.baseline)),
            cfgs=dict(zip(roles, inp.cfgs)),
            manifests=dict(zip(roles, inp.manifests)),
            sweep=inp.sweep,
            frontiers=dict(zip([params.roles["A"], params.roles["B"]], inp.frontiers)),
            planted_recovery=inp.planted_recovery,
            planted_pairs=inp.planted_pairs,
            config=dict(params.config),
        ),
        snakemake.output.numbers,
    )
