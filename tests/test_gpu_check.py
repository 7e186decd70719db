"""benchmarks/gpu_check.sh: refuses without a GPU unless asked for its CPU smoke, which runs every step.

The GPU run itself needs an H100/H200; here its tiny CPU mode exercises the same code paths
(tower timing and FLOP count, cache_shard, train_sae, evaluate_sae, compare_saes, the goals)
and the JSON it writes is checked for its structure and for values that hold by construction.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_refuses_and_says_how_to_run_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu.json"
    assert gpu_check().main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "torch sees no CUDA GPU" in err and "--cpu-smoke" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-smoke", "--out", str(tmp / "gpu.json"),
                           "--work", str(tmp)], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "wrote" in proc.stdout
    return json.loads((tmp / "gpu.json").read_text())


def test_the_cpu_smoke_writes_every_stage(smoke_report):
    r = smoke_report
    assert r["cpu_smoke"] is True and r["device"] == "cpu (smoke)"
    assert 0 < r["seconds"]["cache"] < r["seconds"]["total"]  # no timing asserted: this machine is shared
    assert set(r) >= {"matmul", "bf16_peak_tflop_per_s", "cache", "train", "evaluate", "compare", "sweep", "goals"}
    assert r["bf16_peak_tflop_per_s"] is None  # no datasheet peak for a CPU
    assert [c["model"] for c in r["cache"]] == ["tiny-RN", "tiny-ViT"]
    assert set(r["goals"]) == {"vit_cache_fraction_of_bf16_peak", "paper_sae_seconds", "paper_gpu_hours"}
    assert r["goals"]["vit_cache_fraction_of_bf16_peak"]["met"] is None  # not judged without a peak


def test_the_smoke_figures_agree_with_each_other(smoke_report):
    r, sizes = smoke_report, smoke_report["sizes"]
    assert r["matmul"]["tflop_per_s"] > 0
    for c in r["cache"]:
        assert c["gflop_per_image"] > 0 and c["cache_shard_images"] == sizes["cache_images"]
        assert c["achieved_tflop_per_s"] == pytest.approx(c["model_images_per_s"] * c["gflop_per_image"] / 1e3)
        assert c["fraction_of_matmul_peak"] == pytest.approx(c["achieved_tflop_per_s"] / r["matmul"]["tflop_per_s"])
        assert c["paper_cache_hours"] == pytest.approx((1_281_167 + 50_000) / c["cache_shard_images_per_s"] / 3600)
    # the tiny ViT stops at block 2 of 4 and runs on 64 px: far cheaper than ViT-L/14's ~80 GMAC
    assert r["cache"][1]["gflop_per_image"] < 1
    t = r["train"]
    assert t["samples"] == sizes["samples"] and t["F"] == sizes["d"] * sizes["expansion"]
    assert t["samples_per_s"] * t["seconds"] == pytest.approx(t["samples"])
    assert t["paper_sae_seconds"] == pytest.approx(2_621_440 / t["samples_per_s"])
    assert r["evaluate"]["rows"] == sizes["eval_rows"] and 0 < r["evaluate"]["explained_variance"] <= 1
    assert 0 <= r["compare"]["topk_overlap"] <= 1 and r["compare"]["permutations"] == sizes["permutations"]
    assert r["sweep"]["pairs"] == 1 and -1 <= r["sweep"]["debiased_cka_codes"] <= 1
    hours = sum(c["paper_cache_hours"] for c in r["cache"]) + (
        20 * t["paper_sae_seconds"] + 3 * r["evaluate"]["seconds"] + r["compare"]["seconds"]
        + 6 * r["sweep"]["seconds"]) / 3600
    assert r["goals"]["paper_gpu_hours"]["value"] == pytest.approx(hours)
