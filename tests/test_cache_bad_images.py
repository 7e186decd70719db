"""Unreadable images are zero rows listed in the manifest, masked for readers, and bounded (issue 4, point 5)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from saesuite.models.backbones import load_backbone
from saesuite.cache.reader import ActivationCache
from saesuite.cache.verify import verify_cache
from saesuite.cache.writer import cache_activations
from saesuite.files import sha256_file
from saesuite.data.datasets import DatasetSpec, load_dataset
from saesuite.errors import CacheError

BAD = {"n01443537/img2.JPEG": "garbage", "n01440764/img4.JPEG": "truncated"}  # rows 8 and 4 (sorted order)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    """An ImageFolder tree of 12 JPEGs (2 classes); one file is not an image, one is cut short."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for cls in ("n01440764", "n01443537"):
        (root / "val" / cls).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, size=(48, 56, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "val" / cls / f"img{i}.JPEG", quality=90)
    for name, damage in BAD.items():
        path = root / "val" / name
        path.write_bytes(b"not a jpeg" * 20 if damage == "garbage" else path.read_bytes()[:300])
    return root


def _cache(root, out, max_bad_fraction, num_workers=0):
    bb = load_backbone("tiny-RN", None, "attnpool")
    dataset = load_dataset(DatasetSpec("imagenet", str(root)), "val", transform=bb.preprocess)
    manifest = cache_activations(
        bb, dataset, out, dataset_name="imagenet", split="val", batch_size=4, n_shards=2, dtype="float32",
        max_bad_fraction=max_bad_fraction, num_workers=num_workers,
    )
    return bb, dataset, manifest


def test_bad_images_are_listed_zeroed_and_masked(imagenet_root, tmp_path):
    bb, dataset, manifest = _cache(imagenet_root, tmp_path / "c", max_bad_fraction=0.2)
    bad_rows = [dataset.samples.index((str(imagenet_root / "val" / n), int(n.startswith("n01443537")))) for n in BAD]
    assert sorted(bad_rows) == [4, 8]
    assert manifest["n_bad"] == 2 and [b["row"] for b in manifest["bad_rows"]] == [4, 8]
    assert all(b["path"] == dataset.samples[b["row"]][0] for b in manifest["bad_rows"])
    assert all("Error" in b["error"] for b in manifest["bad_rows"])

    cache = ActivationCache.open(tmp_path / "c")
    x = cache.read_all()
    assert cache.n == 12 and cache.n_bad == 2
    np.testing.assert_array_equal(cache.valid_mask(), ~np.isin(np.arange(12), [4, 8]))
    np.testing.assert_array_equal(cache.valid_indices(), [0, 1, 2, 3, 5, 6, 7, 9, 10, 11])
    assert not x[[4, 8]].any()  # zero rows keep row i = image i
    # the good rows are the activations of their images, computed independently
    good = cache.valid_indices()
    expected = bb.activations(torch.stack([dataset[i][0] for i in good])).numpy()
    np.testing.assert_allclose(x[good], expected, rtol=1e-4, atol=1e-5)
    assert cache.labels().tolist() == dataset.targets  # bad images keep their folder's label


def test_past_the_allowed_fraction_the_job_fails_with_the_list(imagenet_root, tmp_path):
    with pytest.raises(CacheError, match=r"(?s)max_bad_fraction=0.1.*row 4: .*img4.JPEG: OSError"):
        _cache(imagenet_root, tmp_path / "c", max_bad_fraction=0.1)
    assert not (tmp_path / "c" / "shard-00000.npy").exists()  # nothing looks complete


def test_bad_images_are_caught_inside_dataloader_workers(imagenet_root, tmp_path):
    manifest = _cache(imagenet_root, tmp_path / "c", max_bad_fraction=0.2, num_workers=1)[2]
    assert [b["row"] for b in manifest["bad_rows"]] == [4, 8]


def test_verify_rejects_a_bad_row_that_is_not_zero_or_out_of_range(imagenet_root, tmp_path):
    _cache(imagenet_root, tmp_path / "c", max_bad_fraction=0.2)
    path = tmp_path / "c"
    manifest = json.loads((path / "manifest.json").read_text())
    arr = np.load(path / "shard-00000.npy")
    arr[4] = 1.0
    np.save(path / "shard-00000.npy", arr)
    manifest["shards"][0]["sha256"] = sha256_file(path / "shard-00000.npy")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="shard-00000.npy: rows listed as bad images are not zeros"):
        verify_cache(path, finite=True)
    manifest["bad_rows"].append({"row": 12, "path": None, "error": "x"})
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="bad_rows must name distinct rows in 0..11"):
        verify_cache(path)
