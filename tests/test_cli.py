import json
import subprocess
import sys

import pytest

from saesuite.cli import main


def test_help_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "saesuite", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("make-cifar10-fixture", "cache", "train", "evaluate", "compare", "verify-cache", "diff-runs", "prefetch-weights"):
        assert command in out


def test_the_whole_pipeline_through_the_cli(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["make-cifar10-fixture", str(data), "--n", "100", "--n-test", "60", "--seed", "1"]) == 0
    for model, hook in (("tiny-RN", "attnpool"), ("tiny-ViT", "resid_cls:2")):
        for split in ("train", "test"):
            assert main([
                "cache", str(tmp_path / model / split), "--model", model, "--pretrained", "none", "--hook", hook,
                "--dataset", "cifar10", "--root", str(data), "--fixture", "--split", split, "--shards", "2",
                "--device", "cpu",
            ]) == 0
        for seed, out in ((0, "sae"), (1, "sae-seed1")):  # a second SAE seed: the comparison's spread across seeds
            assert main([
                "train", str(tmp_path / model / "train"), str(tmp_path / model / out), "--expansion", "2",
                "--batch-size", "50", "--samples", "500", "--device", "cpu", "--seed", str(seed),
            ]) == 0
        assert main(["evaluate", str(tmp_path / model / "sae"), str(tmp_path / model / "test"), str(tmp_path / model / "eval"),
                     "--dataset", "cifar10", "--root", str(data), "--fixture"]) == 0
        metrics = json.loads((tmp_path / model / "eval" / "metrics.json").read_text())
        assert metrics["fidelity"]["n_images"] == 60  # the dataset enabled the zero-shot splice test
    assert main([
        "compare", str(tmp_path / "tiny-RN" / "test"), str(tmp_path / "tiny-RN" / "sae"),
        str(tmp_path / "tiny-ViT" / "test"), str(tmp_path / "tiny-ViT" / "sae"), str(tmp_path / "cmp"), "--k", "5",
        "--seed-saes-a", str(tmp_path / "tiny-RN" / "sae-seed1"), "--seed-saes-b", str(tmp_path / "tiny-ViT" / "sae-seed1"),
    ]) == 0
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert result["n_images"] == 60 and result["k"] == 5 and result["sae_seeds"] == 2
    seeds = result["linear_cka_codes"]["spread"]["seeds"]
    assert seeds["count"] == 2 and seeds["min"] <= result["linear_cka_codes"]["value"] <= seeds["max"]
    assert result["linear_cka"]["spread"]["seeds"]["sd"] == 0  # the activations do not depend on the SAE seed
    cfg = json.loads((tmp_path / "tiny-ViT" / "sae" / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["hook"], cfg["architecture"]) == (64, 128, "resid_cls:2", "standard")
    assert (cfg["training"]["l1_coefficient"], cfg["training"]["lr"]) == (8e-5, 4e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["cache", "OUT", "--model", "tiny-RN", "--pretrained", "none", "--hook", "attnpool", "--dataset", "imagenet",
          "--root", "ROOT/imagenet", "--split", "val"], "ImageNet split 'val' not found"),
        (["cache", "OUT", "--model", "tiny-RN", "--pretrained", "none", "--hook", "resid_cls:1", "--dataset", "cifar10",
          "--root", "ROOT", "--fixture", "--split", "test"], "use 'attnpool'"),
        (["train", "ROOT/no-cache", "OUT"], "not a complete activation cache"),
    ],
)
def test_errors_are_one_clear_line_and_exit_2(args, message, tmp_path, capsys):
    from saesuite.data.fixture import make_cifar10_fixture

    make_cifar10_fixture(tmp_path, n=10, n_test=5)
    args = [a.replace("ROOT", str(tmp_path)).replace("OUT", str(tmp_path / "out")) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "manifest.json").exists()
