"""Throughput paths of caching give the same numbers as the plain path (issue 4, point 1)."""

import numpy as np
import pytest
import torch

from saesuite.models.backbones import load_backbone
from saesuite.cache.reader import ActivationCache
from saesuite.cache.writer import cache_activations
from saesuite.data.datasets import load_dataset
from saesuite.cache.loader import split_preprocess


def test_uint8_workers_and_device_normalisation_match_the_models_preprocess(fixture_spec):
    bb = load_backbone("tiny-ViT", None, "resid_cls:-2")
    dataset = load_dataset(fixture_spec, "test")
    cpu_part, device_part = split_preprocess(bb.preprocess)
    images = [dataset[i][0] for i in range(8)]  # PIL images
    half = torch.stack([cpu_part(im) for im in images])
    assert half.dtype == torch.uint8 and half.shape == (8, 3, 64, 64)
    torch.testing.assert_close(device_part(half), torch.stack([bb.preprocess(im) for im in images]), rtol=0, atol=0)


def test_one_pass_captures_several_hooks_and_stops_after_the_last():
    bb = load_backbone("tiny-ViT", None, "resid_cls:1")
    x = torch.randn(3, 3, 64, 64)
    blocks = bb.visual.transformer.resblocks
    seen = {}
    handles = [
        blocks[1].register_forward_hook(lambda m, i, o: seen.__setitem__("resid", o[:, 0])),
        blocks[2].mlp.register_forward_hook(lambda m, i, o: seen.__setitem__("mlp_out", o[:, 0])),
        blocks[2].mlp.gelu.register_forward_hook(lambda m, i, o: seen.__setitem__("hidden", o[:, 0])),
    ]
    with torch.no_grad():
        bb.visual(x)  # independent reference: the whole tower
    reference = dict(seen)
    handles.append(blocks[3].register_forward_hook(lambda m, i, o: seen.__setitem__("later", True)))
    seen.clear()
    got = bb.capture(x, ["resid_cls:1", "mlp_out:-2", "mlp_hidden:2"])
    for h in handles:
        h.remove()
    assert set(got) == {"resid_cls:1", "mlp_out:2", "mlp_hidden:2"}  # negative blocks resolved
    torch.testing.assert_close(got["resid_cls:1"], reference["resid"])
    torch.testing.assert_close(got["mlp_out:2"], reference["mlp_out"])
    torch.testing.assert_close(got["mlp_hidden:2"], reference["hidden"])
    assert got["mlp_hidden:2"].shape == (3, 256)  # the MLP width, 4 x 64
    assert "later" not in seen, "blocks after the last hook must not run"


def test_bf16_autocast_is_close_to_fp32_and_really_runs_in_bf16():
    bb = load_backbone("tiny-RN", None, "attnpool")
    x = torch.randn(4, 3, 64, 64)
    exact = bb.prepare("cpu", "fp32").activations(x)
    half = bb.prepare("cpu", "bf16").activations(x)
    assert half.dtype == torch.bfloat16
    rel = (half.float() - exact).norm() / exact.norm()
    assert 0 < rel < 0.05
    assert bb.prepare("cpu", "auto").precision == "fp32"  # bf16 is the default on CUDA only


def test_a_shared_pass_writes_caches_equal_to_separate_ones(fixture_spec, tmp_path):
    bb = load_backbone("tiny-ViT", None, "resid_cls:-2")
    dataset = load_dataset(fixture_spec, "test", transform=bb.preprocess)
    kw = dict(dataset_name="cifar10", split="test", batch_size=32, n_shards=2, dtype="float32", limit=60)
    cache_activations(bb, dataset, tmp_path / "resid", also={"mlp_hidden:-2": tmp_path / "hidden"}, **kw)
    resid, hidden = ActivationCache.open(tmp_path / "resid"), ActivationCache.open(tmp_path / "hidden")
    assert (hidden.d, hidden.manifest["hook"], hidden.n) == (256, "mlp_hidden:2", 60)
    images = torch.stack([dataset[i][0] for i in range(60)])
    expected = bb.capture(images, ["resid_cls:2", "mlp_hidden:2"])
    np.testing.assert_allclose(resid.read_all(), expected["resid_cls:2"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hidden.read_all(), expected["mlp_hidden:2"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(resid.labels(), hidden.labels())


def test_workers_give_the_same_cache_as_the_main_process(fixture_spec, tmp_path, caches):
    bb = load_backbone("tiny-RN", None, "attnpool")
    dataset = load_dataset(fixture_spec, "test", transform=bb.preprocess)
    cache_activations(
        bb, dataset, tmp_path / "w", dataset_name="cifar10", split="test", batch_size=64, n_shards=2,
        dtype="float32", num_workers=1, prefetch_factor=2,
    )
    with_workers = ActivationCache.open(tmp_path / "w")
    reference = ActivationCache.open(caches[("tiny-RN", "test")])  # built with num_workers=0
    np.testing.assert_array_equal(with_workers.read_all(), reference.read_all())
    np.testing.assert_array_equal(with_workers.labels(), reference.labels())


def test_unknown_precision_says_what_to_choose():
    bb = load_backbone("tiny-RN", None, "attnpool")
    with pytest.raises(ValueError, match="choose one of auto, fp32, bf16"):
        bb.prepare("cpu", "fp8")
