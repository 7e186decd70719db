"""Fixtures shared by tests/ and .tests/unit/: the test session's one smoke run."""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per process: the suite runs on 2 cores beside its subprocesses (snakemake
# jobs, a training run to kill), and spinning OpenMP teams oversubscribe them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars are for people; keep test logs readable

from pathlib import Path  # noqa: E402

import pytest

from tests.smoke import build_smoke, workflow_copy


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """``results/smoke`` of the smoke workflow and its paper, built once per session from scratch,
    with temporary files kept (see tests/smoke.py). Tests read it; none may change it.

    ``SAESUITE_SMOKE_RUN=<workdir>`` uses a smoke run built earlier instead (``build_smoke(workdir)``,
    e.g. from the commit before a refactor), with this checkout's workflow files copied over its
    own: ``pytest -m rule`` then checks that every rule still writes that run's bytes."""
    existing = os.environ.get("SAESUITE_SMOKE_RUN")
    if existing:
        workflow_copy(Path(existing))
        return Path(existing) / "results" / "smoke"
    return build_smoke(tmp_path_factory.mktemp("smoke"))
