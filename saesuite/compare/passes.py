"""The comparison's repeated score passes (the permutation null and the split halves), over worker processes.

Each pass is a whole re-run of :meth:`saesuite.compare.features.PairComparison.scores` (the matching
included) and they are independent, so they are spread over ``workers`` processes. Every pass draws
from its own generator, spawned from the comparison's seed before any pass runs, so the tables are
the same bytes whatever the number of workers (``tests/test_compare_any_cache.py`` checks it).

Workers are forked: they share the parent's activations and codes copy-on-write instead of
receiving a copy, and each runs its BLAS on one thread (the passes are the parallelism). Where
``fork`` does not exist (Windows) the passes run one after another in this process.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from saesuite.errors import ConfigError

_SHARED: dict = {}  # the comparison the forked workers read (set before the pool starts)


def _null_pass(rng: np.random.Generator) -> dict:
    """One draw of the permutation null: B's images shuffled against A's."""
    pc = _SHARED["pc"]
    return pc.scores(rng.permutation(pc.n), rng)


def _split_pass(rng: np.random.Generator) -> list[dict]:
    """Every score on both halves of one random split (with each score's number of rows)."""
    pc, keys = _SHARED["pc"], _SHARED["keys"]
    rows = []
    for half, part in enumerate(pc.halves(rng)):
        sizes = {f"n_{key}": part.sizes().get(key, part.n) for key in keys}
        rows.append({"half": half, **sizes, **part.scores()})
    return rows


def _one_thread() -> None:
    threadpool_limits(1)


def _run(task, rngs: list[np.random.Generator], workers: int, desc: str) -> list:
    if workers <= 1 or len(rngs) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [task(rng) for rng in tqdm(rngs, desc=desc, unit="pass")]
    pool = ProcessPoolExecutor(min(workers, len(rngs)), mp_context=multiprocessing.get_context("fork"),
                               initializer=_one_thread)
    try:
        with pool:
            return list(tqdm(pool.map(task, rngs), total=len(rngs), desc=f"{desc} ({workers} workers)", unit="pass"))
    except BrokenProcessPool as err:
        raise ConfigError(f"a comparison worker died during the {desc} ({err}); with {workers} workers each holding "
                          "its own temporaries this is most often memory: give the rule fewer threads "
                          "(snakemake --set-threads compare_saes=N) or the job more memory") from None


def score_passes(pc, keys, permutations: int, splits: int, rng: np.random.Generator,
                 workers: int = 1) -> tuple[list[dict], list[dict]]:
    """The null's rows (one per permutation) and the split halves' rows (two per split, with ``split`` and
    ``half``), each pass on its own generator spawned from ``rng``; ``keys`` are the scores whose row
    counts the halves record."""
    perm_rngs, split_rngs = rng.spawn(permutations), rng.spawn(splits)
    _SHARED.update(pc=pc, keys=tuple(keys))
    try:
        null = _run(_null_pass, perm_rngs, workers, "permutation null")
        halves = [{"split": split, **row}
                  for split, rows in enumerate(_run(_split_pass, split_rngs, workers, "split halves")) for row in rows]
    finally:
        _SHARED.clear()
    return null, halves
