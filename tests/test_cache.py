import json
import shutil

import numpy as np
import pytest
import torch

from saesuite.models.backbones import load_backbone
from saesuite.cache.format import write_manifest
from saesuite.cache.reader import ActivationCache
from saesuite.cache.verify import verify_cache
from saesuite.cache.writer import cache_shard, shard_rows
from saesuite.cli import main
from saesuite.data.datasets import load_dataset
from saesuite.errors import CacheError
from saesuite.outputs import temp_path

KEYS = {"n", "d", "dtype", "model", "pretrained", "hook", "dataset", "split", "shards"}


def test_manifest_and_shards_follow_the_contract(caches):
    path = caches[("tiny-ViT", "test")]
    manifest = json.loads((path / "manifest.json").read_text())
    assert KEYS <= set(manifest)
    assert (manifest["n"], manifest["d"], manifest["hook"], manifest["model"]) == (120, 64, "resid_cls:2", "tiny-ViT")
    assert [s["rows"] for s in manifest["shards"]] == [60, 60]
    for s in manifest["shards"]:
        arr = np.load(path / s["file"], mmap_mode="r")
        assert arr.shape == (s["rows"], 64) and arr.dtype == np.float32
    labels = np.load(path / "labels.npy")
    assert labels.dtype == np.int64 and labels.shape == (120,)
    assert not list(path.glob("*.tmp")) and not list(path.glob("labels-*.npy"))


def test_row_i_is_image_i(caches, fixture_spec):
    """Rows and labels follow the dataset index, across shard boundaries."""
    cache = ActivationCache.open(caches[("tiny-ViT", "test")])
    backbone = load_backbone("tiny-ViT", None, "resid_cls:-2")
    dataset = load_dataset(fixture_spec, "test", transform=backbone.preprocess)
    rows = [0, 59, 60, 119]
    images = torch.stack([dataset[i][0] for i in rows])
    expected = backbone.activations(images).numpy()
    np.testing.assert_allclose(cache.gather(np.array(rows)), expected, rtol=1e-4, atol=1e-5)
    assert cache.labels().tolist() == list(dataset.targets)


def test_gather_and_chunks_agree_with_reading_everything(caches):
    cache = ActivationCache.open(caches[("tiny-RN", "train")])
    everything = cache.read_all()
    idx = np.random.default_rng(0).permutation(cache.n)[:77]
    np.testing.assert_array_equal(cache.gather(idx), everything[idx])
    chunks = [(start, x) for start, x in cache.chunks(rows=50)]
    np.testing.assert_array_equal(np.concatenate([x for _, x in chunks]), everything)
    assert [s for s, _ in chunks][:4] == [0, 50, 100, 150]


def test_embeddings_are_the_image_embedding_from_the_same_pass(caches, fixture_spec):
    """embed-NNNNN.npy holds encode_image's output, across shards; for attnpool it is the hook itself."""
    rows = np.array([0, 59, 60, 119])
    for model, hook in (("tiny-ViT", "resid_cls:-2"), ("tiny-RN", "attnpool")):
        cache = ActivationCache.open(caches[(model, "test")], embeddings=True)
        backbone = load_backbone(model, None, hook)
        images = torch.stack([load_dataset(fixture_spec, "test", transform=backbone.preprocess)[i][0] for i in rows])
        with torch.no_grad():
            expected = backbone.model.encode_image(images).numpy()
        assert cache.manifest["embed_dim"] == 32 if model == "tiny-ViT" else 64
        assert [s["embed"]["file"] for s in cache.manifest["shards"]] == ["embed-00000.npy", "embed-00001.npy"]
        np.testing.assert_allclose(cache.embeddings(rows), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(cache.embeddings(rows), cache.gather(rows))  # attnpool: the embedding


def test_a_cache_without_embeddings_says_so(tmp_path):
    from saesuite.cache.format import write_array_cache

    x = np.ones((6, 3), np.float32)
    plain = ActivationCache.open(write_array_cache(tmp_path / "plain", x, {"model": "m", "hook": "h"}, n_shards=2),
                                 embeddings=True)
    with pytest.raises(CacheError, match="no image embeddings"):
        plain.embeddings(np.array([0]))
    embed = np.arange(12, dtype=np.float32).reshape(6, 2)
    given = write_array_cache(tmp_path / "given", x, {"model": "m", "hook": "h"}, n_shards=2, embed=embed)
    np.testing.assert_array_equal(ActivationCache.open(given, embeddings=True).embeddings(np.array([5, 0, 3])),
                                  embed[[5, 0, 3]])
    # a reader that does not ask for them neither opens nor needs them (a training job declares the shards alone)
    for f in given.glob("embed-*.npy"):
        f.unlink()
    assert ActivationCache.open(given).gather(np.array([1])).tolist() == [[1.0, 1.0, 1.0]]
    with pytest.raises(CacheError, match="embed-00000.npy is missing"):
        ActivationCache.open(given, embeddings=True)


def test_shard_rows_tile_the_range():
    parts = [shard_rows(10, 3, i) for i in range(3)]
    assert parts == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(Exception, match="empty shards"):
        shard_rows(2, 3, 0)


@pytest.fixture
def cache_copy(caches, tmp_path):
    dst = tmp_path / "cache"
    shutil.copytree(caches[("tiny-ViT", "train")], dst)
    return dst


def test_verify_passes_on_a_good_cache(cache_copy, capsys):
    assert main(["verify-cache", str(cache_copy)]) == 0
    assert "OK" in capsys.readouterr().out


def test_truncated_shard_is_caught(cache_copy, capsys):
    shard = cache_copy / "shard-00001.npy"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(CacheError, match="shard-00001.npy"):
        verify_cache(cache_copy)
    assert main(["verify-cache", str(cache_copy)]) == 2
    assert "shard-00001.npy" in capsys.readouterr().err


def test_corrupted_shard_fails_its_checksum(cache_copy):
    shard = cache_copy / "shard-00000.npy"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # same size, same header: only the sha256 sees it
    shard.write_bytes(bytes(data))
    verify_cache(cache_copy, checksums=False)
    with pytest.raises(CacheError, match="shard-00000.npy fails its sha256"):
        verify_cache(cache_copy)


def test_corrupted_or_missing_embeddings_are_caught(cache_copy):
    embed = cache_copy / "embed-00001.npy"
    data = bytearray(embed.read_bytes())
    data[-3] ^= 0xFF
    embed.write_bytes(bytes(data))
    verify_cache(cache_copy, checksums=False)
    with pytest.raises(CacheError, match="embed-00001.npy fails its sha256"):
        verify_cache(cache_copy)
    embed.unlink()
    with pytest.raises(CacheError, match="embed-00001.npy is missing"):
        verify_cache(cache_copy, checksums=False)


def test_nan_in_a_shard_is_caught(cache_copy):
    manifest = json.loads((cache_copy / "manifest.json").read_text())
    arr = np.load(cache_copy / "shard-00000.npy")
    arr[3, 2] = np.nan
    np.save(cache_copy / "shard-00000.npy", arr)
    from saesuite.files import sha256_file

    manifest["shards"][0]["sha256"] = sha256_file(cache_copy / "shard-00000.npy")
    (cache_copy / "manifest.json").write_text(json.dumps(manifest))
    verify_cache(cache_copy)
    with pytest.raises(CacheError, match="NaN or inf"):
        verify_cache(cache_copy, finite=True)
    # training and evaluation open caches through ActivationCache.open: the same full check
    with pytest.raises(CacheError, match="shard-00000.npy holds NaN or inf values"):
        ActivationCache.open(cache_copy)
    from saesuite.sae.config import TrainConfig
    from saesuite.sae.train import train_sae

    with pytest.raises(CacheError, match="shard-00000.npy holds NaN or inf values"):
        train_sae(cache_copy, cache_copy.parent / "sae", TrainConfig())


def test_training_refuses_a_corrupted_cache(cache_copy):
    from saesuite.sae.config import TrainConfig
    from saesuite.sae.train import train_sae

    shard = cache_copy / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-7] ^= 0x10
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="shard-00001.npy fails its sha256"):
        train_sae(cache_copy, cache_copy.parent / "sae", TrainConfig())


@pytest.mark.parametrize("damage", ["missing_shard", "wrong_dtype", "wrong_rows", "no_manifest"])
def test_other_damage_is_caught(cache_copy, damage):
    manifest = json.loads((cache_copy / "manifest.json").read_text())
    if damage == "missing_shard":
        (cache_copy / "shard-00001.npy").unlink()
        match = "shard-00001.npy is missing"
    elif damage == "wrong_dtype":
        manifest["dtype"] = "float16"
        match = "dtype float32, the manifest says float16"
    elif damage == "wrong_rows":
        manifest["shards"][0]["rows"] += 1
        match = "has shape"
    else:
        (cache_copy / "manifest.json").unlink()
        match = "not a complete activation cache"
    if damage != "no_manifest":
        (cache_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match=match):
        verify_cache(cache_copy)


def test_a_killed_run_redoes_only_unfinished_shards(fixture_spec, tmp_path, monkeypatch):
    backbone = load_backbone("tiny-RN", None, "attnpool")
    dataset = load_dataset(fixture_spec, "test", transform=backbone.preprocess)
    out = tmp_path / "c"
    kw = dict(dataset_name="cifar10", split="test", batch_size=40, dtype="float16")
    first = cache_shard(backbone, dataset, out, 0, 3, **kw)
    # a shard killed mid-write leaves only a temporary file, never a complete-looking shard
    (out / "shard-00001.npy.tmp").write_bytes(b"half written")
    with pytest.raises(CacheError, match="shard 1 is not complete"):
        write_manifest(out, 3)
    calls = []
    original = backbone.capture
    monkeypatch.setattr(backbone, "capture", lambda x, hooks, **kw: calls.append(len(x)) or original(x, hooks, **kw))
    assert cache_shard(backbone, dataset, out, 0, 3, **kw) == first  # complete: not recomputed
    assert calls == []
    cache_shard(backbone, dataset, out, 1, 3, **kw)
    cache_shard(backbone, dataset, out, 2, 3, **kw)
    assert sum(calls) == 80  # only shards 1 and 2 ran
    manifest = write_manifest(out, 3)
    assert manifest["n"] == 120 and manifest["dtype"] == "float16"
    verify_cache(out)


def test_a_job_killed_mid_shard_leaves_nothing_complete_and_the_rerun_matches(fixture_spec, tmp_path, monkeypatch, caches):
    backbone = load_backbone("tiny-ViT", None, "resid_cls:-2")
    dataset = load_dataset(fixture_spec, "test", transform=backbone.preprocess)
    out = tmp_path / "c"
    kw = dict(dataset_name="cifar10", split="test", batch_size=64, dtype="float32")
    original, calls = backbone.capture, []

    def dies_on_second_batch(x, hooks, **kw):
        calls.append(len(x))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the job is killed mid-shard
        return original(x, hooks, **kw)

    monkeypatch.setattr(backbone, "capture", dies_on_second_batch)
    cache_shard(backbone, dataset, out, 0, 2, **kw)
    with pytest.raises(KeyboardInterrupt):
        cache_shard(backbone, dataset, out, 1, 2, **kw)
    assert not (out / "shard-00001.npy").exists() and not (out / "shard-00001.json").exists()
    assert not list(out.glob("*.tmp"))  # an interrupted writer removes its temporary file
    stale = temp_path(out / "shard-00001.npy")  # what a writer killed outright (SIGKILL) leaves behind
    stale.write_bytes(b"half a shard")
    monkeypatch.setattr(backbone, "capture", original)
    cache_shard(backbone, dataset, out, 1, 2, **kw)  # the rerun redoes shard 1 only
    write_manifest(out, 2)
    assert not list(out.glob("*.tmp"))
    reference = ActivationCache.open(caches[("tiny-ViT", "test")])  # built in one go
    np.testing.assert_array_equal(ActivationCache.open(out).read_all(), reference.read_all())
