"""Set-up for the rule tests Snakemake generated (test_<rule>.py; see ../regenerate.sh).

Kept from Snakemake's generated conftest.py: the ``--conda-prefix`` option and fixture. Added:
the tests start ``python -m snakemake``, so the interpreter running pytest (the project's venv)
must be the first ``python`` on PATH; one OpenMP thread per job, as in tests/conftest.py; and
the paper's rule test skips, saying why, where TeX Live or poppler is missing (fails under CI).
"""

import os
import shutil
import sys
from pathlib import Path

import pytest
from pytest import fixture

os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_addoption(parser):
    parser.addoption("--conda-prefix", action="store", default=None)


@fixture()
def conda_prefix(request):
    conda_prefix = request.config.option.conda_prefix
    return ["--conda-prefix", conda_prefix] if conda_prefix else []


def pytest_collection_modifyitems(config, items):
    """Mark every test here `rule`: `pytest -m "not rule"` leaves them out, `-m rule` runs only them."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker("rule")


# programs a rule test needs beyond the venv: (test name, programs, what installs them)
NEEDS = {"test_paper_pdf": (("latexmk", "pdftotext"), "TeX Live and poppler-utils (.ci/run installs them)")}


def pytest_runtest_setup(item):
    programs, hint = NEEDS.get(item.name, ((), ""))
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        message = f"{item.name} needs {', '.join(missing)}: {hint}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
