"""The generated per-rule tests (.tests/unit): every rule of the smoke run has one, and the way
they compare a fresh output with the recorded one (.tests/unit/common.py) fails when it should."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / ".tests" / "unit"


def _load_common():
    spec = importlib.util.spec_from_file_location("rule_test_common", UNIT / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()


def smoke_rules() -> set[str]:
    """Every rule with a job in the smoke run and its paper (`all paper`), from a forced dry run."""
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "all", "paper", "-n", "-F", "--configfile", "config/smoke.yaml"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    table = out[out.index("Job stats:"):].split("\n\n")[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", table, re.M)} - {"all", "paper", "total"}


def test_every_rule_of_the_smoke_run_has_a_recorded_test():
    rules = smoke_rules()
    assert {"cache_shard", "train_sae", "evaluate_sae", "compare_saes", "provenance", "paper_pdf"} <= rules
    generated = {p.stem.removeprefix("test_") for p in UNIT.glob("test_*.py")}
    assert rules - generated == set(), "run `bash .tests/regenerate.sh` to record tests for new rules"
    assert generated - rules == set(), "tests of rules the workflow no longer has: regenerate"
    for rule in rules:
        source = (UNIT / f"test_{rule}.py").read_text()
        assert f'"--allowed-rules",\n                "{rule}",' in source  # the test runs that rule alone
        assert any((UNIT / rule / "expected").rglob("*")), f"{rule}: nothing recorded"


def test_a_rule_test_sees_every_file_its_job_reads():
    """Inputs are declared file by file (dataset, cache shards, SAE files), so a recorded job has them."""
    data = UNIT / "evaluate_sae" / "data" / "results" / "smoke"
    for rel in ("data/cifar10/cifar-10-batches-py/test_batch", "cache/tiny-RN/test/shard-00001.npy",
                "cache/tiny-RN/test/labels.npy", "sae/tiny-RN/cfg.json", "sae/tiny-RN/sae_weights.safetensors"):
        assert (data / rel).is_file(), rel


def _pair(tmp_path, name, write_expected, write_actual):
    e, a = tmp_path / "expected" / name, tmp_path / "actual" / name
    e.parent.mkdir(exist_ok=True)
    a.parent.mkdir(exist_ok=True)
    write_expected(e)
    write_actual(a)
    return e, a


def test_arrays_agree_within_tolerance_and_fail_beyond_it(tmp_path):
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    e, a = _pair(tmp_path, "w.npy", lambda p: np.save(p, x), lambda p: np.save(p, x * (1 + 1e-5)))
    assert e.read_bytes() != a.read_bytes()
    common.compare_outputs(e, a)
    e, a = _pair(tmp_path, "w2.npy", lambda p: np.save(p, x), lambda p: np.save(p, x + 0.01))
    with pytest.raises(common.Mismatch, match="largest difference 0.01"):
        common.compare_outputs(e, a)
    ints = np.arange(10)
    e, a = _pair(tmp_path, "l.npy", lambda p: np.save(p, ints), lambda p: np.save(p, ints[::-1].copy()))
    with pytest.raises(common.Mismatch, match="10 of 10 entries differ"):
        common.compare_outputs(e, a)
    e, a = _pair(tmp_path, "s.safetensors", lambda p: save_file({"W": x}, str(p)),
                 lambda p: save_file({"W": x, "b": x}, str(p)))
    with pytest.raises(common.Mismatch, match="arrays"):
        common.compare_outputs(e, a)


def test_text_compares_numbers_within_tolerance_and_the_rest_exactly(tmp_path):
    rec = {"l0": 12.5, "explained_variance": 0.9123, "model": "tiny-RN"}
    e, a = _pair(tmp_path, "m.json", lambda p: p.write_text(json.dumps(rec)),
                 lambda p: p.write_text(json.dumps({**rec, "explained_variance": 0.91231})))
    common.compare_outputs(e, a)
    e, a = _pair(tmp_path, "m2.json", lambda p: p.write_text(json.dumps(rec)),
                 lambda p: p.write_text(json.dumps({**rec, "explained_variance": 0.95})))
    with pytest.raises(common.Mismatch, match="0.9123 recorded, 0.95 now"):
        common.compare_outputs(e, a)
    e, a = _pair(tmp_path, "m3.json", lambda p: p.write_text(json.dumps(rec)),
                 lambda p: p.write_text(json.dumps({**rec, "model": "tiny-ViT"})))
    with pytest.raises(common.Mismatch, match="beyond its numbers"):
        common.compare_outputs(e, a)


def test_images_compare_by_pixels(tmp_path):
    base = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    one_off = base.copy()
    one_off[0, 0, 0] ^= 1
    e, a = _pair(tmp_path, "f.png", lambda p: Image.fromarray(base).save(p),
                 lambda p: Image.fromarray(one_off).save(p))
    common.compare_outputs(e, a)
    e, a = _pair(tmp_path, "g.png", lambda p: Image.fromarray(base).save(p),
                 lambda p: Image.fromarray(255 - base).save(p))
    with pytest.raises(common.Mismatch, match="RMS"):
        common.compare_outputs(e, a)


def test_other_files_must_be_byte_identical(tmp_path):
    e, a = _pair(tmp_path, "data_batch_1", lambda p: p.write_bytes(b"\x80\x04abc"), lambda p: p.write_bytes(b"\x80\x04abd"))
    with pytest.raises(common.Mismatch, match="bytes differ"):
        common.compare_outputs(e, a)


def test_exact_mode_refuses_any_byte_difference(tmp_path, monkeypatch):
    x = np.ones(4, np.float32)
    e, a = _pair(tmp_path, "w.npy", lambda p: np.save(p, x), lambda p: np.save(p, x * (1 + 1e-6)))
    common.compare_outputs(e, a)
    monkeypatch.setenv("SAESUITE_EXACT_OUTPUTS", "1")
    with pytest.raises(common.Mismatch, match="SAESUITE_EXACT_OUTPUTS"):
        common.compare_outputs(e, a)


def test_provenance_compares_config_and_the_hashes_of_what_the_job_saw(tmp_path):
    rec = {"run": "smoke", "config": {"seed": 0}, "config_sha256": "c", "git": {"commit": "a"},
           "packages": {}, "device": {}, "outputs": {"eval/m.json": "h1", "logs/x.log": "h2"}}
    later = {**rec, "git": {"commit": "b"}, "outputs": {"eval/m.json": "h1"}}  # no logs in a unit test
    e, a = _pair(tmp_path, "provenance.json", lambda p: p.write_text(json.dumps(rec)),
                 lambda p: p.write_text(json.dumps(later)))
    common.compare_outputs(e, a)
    for changed, message in (({"outputs": {"eval/m.json": "h9"}}, "sha256 differs"),
                             ({"outputs": {"eval/new.json": "h1"}}, "not in the recording"),
                             ({"config": {"seed": 1}}, "'config' differs")):
        (tmp_path / "actual" / "provenance.json").write_text(json.dumps({**later, **changed}))
        with pytest.raises(common.Mismatch, match=message):
            common.compare_outputs(e, a)
