"""One test per rule: the rule run alone, in a fresh folder, on the declared inputs of one of its
jobs in this test session's smoke run, writes that run's outputs again, byte for byte.

Nothing is recorded in the repository. The session builds the smoke run and its paper once
(``smoke_run``, the root conftest.py; temporary files kept), then ``snakemake
--generate-unit-tests`` picks one job of each rule over that run and copies the job's inputs
(``<rule>/data``) and outputs (``<rule>/expected``) into a temporary folder, with a generated
``test_<rule>.py`` naming the job's targets. Each test here copies that job's inputs into a fresh
folder, runs the rule alone there (``--allowed-rules``, forced) and compares what it writes with
the smoke run's own outputs (common.py: byte for byte, apart from the two files it names, with the
reason). Because a job run alone has only its declared inputs, every file a rule reads must be
declared: a rule that reads an undeclared file fails here.

    pytest -m rule                                  # every rule
    pytest ".tests/unit/test_rules.py::test_rule[train_sae]"   # one rule (or -k train_sae)

Same machine, same software stack: bytes. Across machines the smoke run's headline numbers are
checked against tests/reference/smoke.json instead (tests/test_reproducibility.py).
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from tests.smoke import SMOKE, paper_targets, snakemake  # noqa: E402

# Every rule with a job in the smoke run and its paper (`all paper`); tests/test_rule_tests.py
# keeps this list equal to the workflow's.
RULES = (
    "cifar10_fixture", "cache_shard", "gather_cache", "train_sae", "train_seed_sae", "train_replication",
    "sweep_frontier", "evaluate_sae", "compare_saes", "compare_sweep", "planted_compare", "eval_figures",
    "compare_figures", "figure_compare_sweep", "figure_feature_map", "figure_frontier", "figure_lifetime_sparsity",
    "figure_training_curve", "explorer", "planted_dictionary_recovery", "paper_numbers",
    "paper_sources", "paper_pdf", "provenance",
)


@pytest.fixture(scope="session")
def generated(smoke_run) -> Path:
    """``snakemake --generate-unit-tests`` over the session's smoke run: per rule, one job's
    inputs, outputs and a generated test naming its targets (in the run's working directory,
    where the generator must write, beside its results/)."""
    workdir = smoke_run.parents[1]
    out = workdir / ".tests" / "unit"
    if os.environ.get("SAESUITE_SMOKE_RUN") and (out / "test_provenance.py").is_file():
        return out  # an earlier run's, generated once (several test sessions may share it)
    snakemake(workdir, "all", *paper_targets(), "--generate-unit-tests", str(out), *SMOKE, cores=1)
    return out


def job_targets(generated_test: Path) -> list[str]:
    """The output files a generated test asks Snakemake for: the list of command-line words
    between ``python -m snakemake`` and ``--snakefile`` in its source."""
    for node in ast.walk(ast.parse(generated_test.read_text())):
        if isinstance(node, ast.List):
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            if words[:3] == ["python", "-m", "snakemake"] and "--snakefile" in words:
                return words[3 : words.index("--snakefile")]
    raise AssertionError(f"{generated_test}: no `python -m snakemake ... --snakefile` command found")


@pytest.mark.parametrize("rule", RULES)
def test_rule(rule, generated, smoke_run, tmp_path):
    generated_test = generated / f"test_{rule}.py"
    assert generated_test.is_file(), f"the smoke run has no job of rule {rule} with all its inputs"
    job = generated / rule
    workdir = tmp_path / "workdir"
    shutil.copytree(job / "config", workdir)
    shutil.copytree(job / "data", workdir, dirs_exist_ok=True)
    snakemake(
        smoke_run.parents[1],
        *job_targets(generated_test), "-f", "--notemp", "--allowed-rules", rule,
        "--target-files-omit-workdir-adjustment", "--directory", str(workdir), *SMOKE,
        # an earlier run's jobs carry the code hashes of that code: only missing files make upstream jobs
        *(("--rerun-triggers", "mtime") if os.environ.get("SAESUITE_SMOKE_RUN") else ()),
        cores=2,  # as the smoke run: a job's thread count (Snakemake sets OMP_NUM_THREADS to it) is part of its bytes
    )
    common.check_outputs(job / "expected", workdir)
