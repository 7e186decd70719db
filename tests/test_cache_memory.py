"""Host memory of a cache job is bounded by batch and shard size, not by the dataset (issue 4, point 6).

tracemalloc sees every Python and numpy allocation (torch's own allocator is
per batch and not traced). The shard is written through a memory map, so what
grows with the shard is only its labels, 8 bytes a row; holding the shard in
memory would cost ``d * itemsize`` bytes a row.
"""

import tracemalloc

import pytest
import torch
from torch.utils.data import Dataset

import saesuite.files
from saesuite.models.backbones import load_backbone
from saesuite.cache.writer import cache_shard


class LazyImages(Dataset):
    """``n`` images made on demand from their index (a stand-in for a dataset of any size)."""

    def __init__(self, n: int):
        self.n = n
        self.transform = lambda x: x

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.transform(torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i))), i % 10


@pytest.fixture(scope="module")
def backbone():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: spinning OpenMP threads would dominate
    yield load_backbone("tiny-RN", None, "attnpool")
    torch.set_num_threads(threads)


def peak_bytes(backbone, tmp_path, n: int, rows: int, batch: int) -> int:
    out = tmp_path / f"{n}-{rows}-{batch}"
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        cache_shard(backbone, LazyImages(n), out, 0, n // rows, dataset_name="lazy", split="train", batch_size=batch, dtype="float32")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_dataset_or_the_shards_activations(backbone, tmp_path, monkeypatch):
    monkeypatch.setattr(saesuite.files, "HASH_BLOCK", 1 << 12)  # below the smallest shard file
    peak_bytes(backbone, tmp_path, 64, 64, 32)  # warm-up: one-off allocations of the first run
    small = peak_bytes(backbone, tmp_path, 256, 128, 32)
    huge = peak_bytes(backbone, tmp_path, 128 * 10**6, 128, 32)  # same shard and batch, 500,000x the images
    assert abs(huge - small) < 0.05 * small
    long_shard = peak_bytes(backbone, tmp_path, 2048, 2048, 32)
    per_row = (long_shard - small) / (2048 - 128)
    # labels cost 8 bytes a row; the rest is allocator noise of a few tens of kB
    assert per_row < backbone.d * 4 / 4, f"{per_row:.0f} bytes a row: the shard's {backbone.d * 4} bytes a row are held in memory"
