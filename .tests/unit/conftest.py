"""Set-up for the per-rule tests (test_rules.py).

The generated jobs start ``python -m snakemake``, so the interpreter running pytest (the
project's venv) must be the first ``python`` on PATH; one OpenMP thread per job, as in
tests/conftest.py and the session's smoke run; and the paper's rule test skips, saying why,
where TeX Live or poppler is missing (fails under CI).
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_collection_modifyitems(config, items):
    """Mark every test here `rule`: `pytest -m "not rule"` leaves them out, `-m rule` runs only them."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker("rule")


# programs a rule test needs beyond the venv: (test name, programs, what installs them)
NEEDS = {"test_rule[paper_pdf]": (("latexmk", "pdftotext"), "TeX Live and poppler-utils (.ci/run installs them)")}


def pytest_runtest_setup(item):
    programs, hint = NEEDS.get(item.name, ((), ""))
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        message = f"{item.name} needs {', '.join(missing)}: {hint}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
