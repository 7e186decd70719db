"""Rule compare_sweep: the cross-model scores of every SAE name both models trained, with their L0."""
from pathlib import Path

from saesuite.runlog import log_to
from saesuite.compare.sweep import compare_along_sweep

with log_to(snakemake.log[0]):
    inp, p = snakemake.input, snakemake.params
    saes = {side: {name: Path(path).parent for name, path in zip(p.names, inp[f"cfgs_{side}"])} for side in "ab"}
    table = compare_along_sweep(Path(inp.cache_a).parent, Path(inp.cache_b).parent, saes["a"], saes["b"],
                                k=p.k, device=p.device)
    table.to_csv(snakemake.output[0], index=False)
    print(table.to_string(index=False))
