"""saesuite.report.provenance: which sources a rule's code hash covers, and the run's provenance record."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from saesuite.report import provenance
from saesuite.report.provenance import code_hash, config_hash, git_state, lock_lines, output_hashes, source_files

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
PKG = REPO / "saesuite"


def names(script: str) -> set[str]:
    return {p.relative_to(PKG).as_posix() for p in source_files(SCRIPTS / script, PKG)}


def test_a_script_covers_the_modules_it_imports_transitively_and_the_data_they_read():
    def packages(files: set[str]) -> set[str]:
        return {n.split("/")[0] for n in files if "/" in n}

    train = names("train_sae.py")
    assert {"__init__.py", "runlog.py", "sae/__init__.py"} <= train
    assert {"sae", "cache"} <= packages(train)
    # training does not import the evaluation, the comparison or the reports
    assert not packages(train) & {"evaluate", "compare", "report"}
    evaluate = names("evaluate_sae.py")
    assert "evaluate" in packages(evaluate) and "schema.py" in evaluate
    assert any(n.startswith("schemas/") and n.endswith(".schema.json") for n in evaluate)  # schema.py reads them
    assert any(n.startswith("model_configs/") for n in names("cache_shard.py"))  # backbones.py registers them
    fixture = names("make_fixture.py")
    assert "data/fixture.py" in fixture and not packages(fixture) & {"sae", "models"}


def test_relative_and_from_package_imports_are_followed(tmp_path):
    pkg = tmp_path / "pkgx"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n    return open('data')\n")
    (pkg / "c.py").write_text("x = 'data'\n")
    (pkg / "unused.py").write_text("")
    (pkg / "data" / "table.json").write_text("{}")
    script = tmp_path / "script.py"
    script.write_text("from pkgx import a\n")
    got = {p.relative_to(pkg).as_posix() for p in source_files(script, pkg)}
    assert got == {"__init__.py", "a.py", "b.py", "c.py", "data/table.json"}


def test_the_code_hash_changes_with_a_called_module_and_only_then(tmp_path):
    pkg = tmp_path / "saesuite"
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = {s: code_hash(str(SCRIPTS / s), str(pkg)) for s in ("train_sae.py", "make_fixture.py")}
    assert before["train_sae.py"] == code_hash(str(SCRIPTS / "train_sae.py"))  # same bytes, same hash
    only_training = sorted(n for n in names("train_sae.py") - names("make_fixture.py") if n.endswith(".py"))[0]
    (pkg / only_training).write_text((pkg / only_training).read_text() + "\n# changed\n")
    code_hash.cache_clear()
    after = {s: code_hash(str(SCRIPTS / s), str(pkg)) for s in before}
    assert after["train_sae.py"] != before["train_sae.py"]
    assert after["make_fixture.py"] == before["make_fixture.py"]


def test_every_rule_script_is_hashed_by_its_rule():
    """Each rule that runs a script carries `code=code_hash(...)` of that same script."""
    import re

    for smk in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"(?m)^rule ", smk.read_text())[1:]:
            script = re.search(r'script:\n\s+"\.\./workflow/scripts/([\w.]+)"', block)
            if script:
                assert f'code=code_hash(f"{{SCRIPTS}}/{script.group(1)}")' in block, (smk.name, block.split(":")[0])


def test_output_hashes_are_the_sha256_of_every_file(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.bin").write_bytes(b"\x00\x01" * 5000)
    (tmp_path / "y.txt").write_text("hello")
    (tmp_path / "skip.json").write_text("{}")
    got = output_hashes(tmp_path, exclude=(str(tmp_path / "skip.json"),))
    assert got == {
        "a/b/x.bin": hashlib.sha256(b"\x00\x01" * 5000).hexdigest(),
        "y.txt": hashlib.sha256(b"hello").hexdigest(),
    }


def test_config_hash_is_canonical():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_git_state_reports_commit_and_dirty_flag(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # not a work tree
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), *env, "commit", "-qm", "x"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "f").write_text("2")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}


def test_package_versions_and_device_are_recorded():
    versions = provenance.package_versions()
    assert versions["saesuite"] == "0.1.0" and versions["torch"].startswith("2.14.1")
    assert set(versions) >= {"numpy", "snakemake", "open_clip_torch"}
    device = provenance.device_info()
    assert device["cuda_available"] in (True, False) and isinstance(device["cuda_devices"], list)


def test_lock_lines_from_a_pip_report():
    report = {"install": [{"metadata": {"name": n, "version": v}} for n, v in
                          [("numpy", "2.4.6"), ("saesuite", "0.1.0"), ("Jinja2", "3.1.6")]]}
    assert lock_lines(report) == ["Jinja2==3.1.6", "numpy==2.4.6"]
    assert json.dumps(report)  # the report format pip writes is plain JSON
