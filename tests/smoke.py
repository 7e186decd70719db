"""The smoke workflow as the tests run it: a fresh copy of the workflow's files, and Snakemake in it.

``build_smoke`` is the one smoke run of a test session (the root conftest.py's ``smoke_workdir``
fixture): the whole DAG, then the paper, with temporary files kept (``--notemp``) so that every
job's declared inputs exist afterwards and each rule can be rerun alone on them (.tests/unit).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "rules", "workflow", "config", "profiles", "report", "paper")
SMOKE = ("--configfile", "config/smoke.yaml")  # after the targets: --configfile takes several values


def workflow_copy(dest: Path) -> Path:
    """The workflow's files (Snakefile, rules, scripts, configs...) copied into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy(REPO / name, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, cores: int = 2) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), *args], cwd=workdir, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dry_run_with(workdir: Path, config: dict) -> subprocess.CompletedProcess:
    """``snakemake -n`` in a fresh copy of the workflow at ``workdir`` with ``config`` as its config file."""
    import yaml

    workflow_copy(workdir)
    (workdir / "config" / "bad.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/bad.yaml"],
                          cwd=workdir, capture_output=True, text=True)


def has_tex() -> bool:
    """TeX Live and poppler, which the paper's PDF and its tests need (.ci/run installs them)."""
    return shutil.which("latexmk") is not None and shutil.which("pdftotext") is not None


def paper_targets() -> tuple[str, ...]:
    """The paper target where TeX Live is installed, else the paper's sources (no PDF)."""
    return ("paper",) if has_tex() else ("results/smoke/paper/sources.tex",)


def build_smoke(workdir: Path) -> Path:
    """The smoke run and its paper from scratch in ``workdir``, temporary files kept; its run folder."""
    workflow_copy(workdir)
    snakemake(workdir, "all", "--notemp", *SMOKE)
    # after `all`, so that provenance.json (the last job of `all`) does not record the paper
    snakemake(workdir, *paper_targets(), "--notemp", *SMOKE)
    return workdir / "results" / "smoke"
