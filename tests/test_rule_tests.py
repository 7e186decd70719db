"""The per-rule tests (.tests/unit): every rule of the smoke run has one, the repository records
no outputs for them, and the way they compare a rule's fresh output with the smoke run's
(.tests/unit/common.py) fails when it should."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / ".tests" / "unit"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"rule_test_{name}", UNIT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load("common")
rule_tests = _load("test_rules")


def smoke_rules() -> set[str]:
    """Every rule with a job in the smoke run and its paper (`all paper`), from a forced dry run."""
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "all", "paper", "-n", "-F", "--configfile", "config/smoke.yaml"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    table = out[out.index("Job stats:"):].split("\n\n")[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", table, re.M)} - {"all", "paper", "total"}


def test_every_rule_of_the_smoke_run_has_a_rule_test():
    rules = smoke_rules()
    assert {"cache_shard", "train_sae", "evaluate_sae", "compare_saes", "provenance", "paper_pdf"} <= rules
    assert rules == set(rule_tests.RULES), "keep RULES in .tests/unit/test_rules.py equal to the workflow's rules"


def test_the_repository_records_no_outputs():
    """The rule tests compare with the session's own smoke run: nothing recorded is committed."""
    assert sorted(p.name for p in UNIT.iterdir() if p.name != "__pycache__") == [
        "__init__.py", "common.py", "conftest.py", "test_rules.py"]


def _pair(tmp_path, name, write_expected, write_actual):
    e, a = tmp_path / "expected" / name, tmp_path / "actual" / name
    e.parent.mkdir(exist_ok=True)
    a.parent.mkdir(exist_ok=True)
    write_expected(e)
    write_actual(a)
    return e, a


def test_outputs_must_be_byte_identical(tmp_path):
    e, a = _pair(tmp_path, "data_batch_1", lambda p: p.write_bytes(b"\x80\x04abc"), lambda p: p.write_bytes(b"\x80\x04abc"))
    common.compare_outputs(e, a)
    for name, fresh in (("data_batch_2", b"\x80\x04abd"), ("m.json", b'{"l0": 12.50001}')):
        e, a = _pair(tmp_path, name, lambda p: p.write_bytes(b'{"l0": 12.5}' if p.suffix else b"\x80\x04abc"),
                     lambda p: p.write_bytes(fresh))
        with pytest.raises(common.Mismatch, match="bytes differ"):
            common.compare_outputs(e, a)


def test_provenance_compares_config_and_the_hashes_of_what_the_job_saw(tmp_path):
    rec = {"run": "smoke", "config": {"seed": 0}, "config_sha256": "c", "git": {"commit": "a"},
           "packages": {}, "device": {}, "outputs": {"eval/m.json": "h1", "logs/x.log": "h2"}}
    later = {**rec, "git": {"commit": "b"}, "outputs": {"eval/m.json": "h1"}}  # no logs in a unit test
    e, a = _pair(tmp_path, "provenance.json", lambda p: p.write_text(json.dumps(rec)),
                 lambda p: p.write_text(json.dumps(later)))
    common.compare_outputs(e, a)
    for changed, message in (({"outputs": {"eval/m.json": "h9"}}, "sha256 differs"),
                             ({"outputs": {"eval/new.json": "h1"}}, "not in the smoke run"),
                             ({"config": {"seed": 1}}, "'config' differs")):
        (tmp_path / "actual" / "provenance.json").write_text(json.dumps({**later, **changed}))
        with pytest.raises(common.Mismatch, match=message):
            common.compare_outputs(e, a)
