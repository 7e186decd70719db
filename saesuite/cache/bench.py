"""Benchmark of the caching path against a naive loop, on the same images and batch size.

* **naive**: a single-process ``DataLoader`` with the model's full float
  preprocessing, fp32, and the full ``model.encode_image`` forward with a forward
  hook on the hooked module (what one writes first).
* **cache**: :func:`saesuite.cache.writer.cache_shard` itself, end to end (workers, uint8
  batches normalised on the device, the forward stopped at the hook, bf16
  autocast and channels-last on CUDA, the memory-mapped shard write and its sha256).

Each path is also split into its two halves, measured alone: the loader with no
model (decode + preprocess, images/s) and the model on batches already in memory
(images/s, FLOP per image from ``torch.utils.flop_counter``, achieved FLOP/s and,
on a known GPU, the fraction of its bf16 dense peak). The slower half is the
bottleneck. Figures are medians over ``repeats``; the speed-up is the median of
the per-repeat ratios, each against the naive loop run just before it, so a
machine whose load drifts during the run biases neither side.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from saesuite.models.backbones import Backbone, load_backbone
from saesuite.cache.writer import cache_shard
from saesuite.data.datasets import DatasetSpec, load_dataset
from saesuite.data.fixture import make_cifar10_fixture
from saesuite.cache.loader import shard_loader

#: bf16 dense tensor-core peak, FLOP/s, by a substring of ``torch.cuda.get_device_name()``.
BF16_PEAK = {"H200": 989.4e12, "H100 PCIe": 756.5e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362.1e12, "A10": 125e12}
#: images cached per model by the paper run: ImageNet-1k train + val.
PAPER_IMAGES = 1_281_167 + 50_000


@dataclass
class BenchSetup:
    """What one model's benchmark runs on."""

    model: str
    hook: str
    images: int
    batch_size: int
    num_workers: int
    device: str
    precision: str
    repeats: int


def make_images(root: Path, kind: str, n: int, seed: int = 0) -> DatasetSpec:
    """A dataset of ``n`` images under ``root``: ``cifar10`` (the 32 px fixture) or ``jpeg``
    (an ImageFolder of 500x375 JPEGs, ImageNet's typical size, so decoding costs what it would)."""
    if kind == "cifar10":
        make_cifar10_fixture(root, n=max(n, 5), n_test=n, seed=seed)
        return DatasetSpec("cifar10", str(root), fixture=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(n):
        folder = root / "val" / f"n{i % 10:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = (np.sin(xx / (7 + i % 13) + i) * 60 + np.cos(yy / (5 + i % 7)) * 60 + 128)[..., None]
        pixels = np.clip(base + rng.normal(0, 20, size=(375, 500, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:06d}.JPEG", quality=90)
    return DatasetSpec("imagenet", str(root))


def _split(kind: str) -> str:
    return "test" if kind == "cifar10" else "val"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive_loop(bb: Backbone, dataset: Dataset, batch_size: int, device: torch.device) -> tuple[float, np.ndarray]:
    """Seconds and ``[n, d]`` activations of the naive loop: full forward, forward hook, fp32, no workers."""
    captured: list[torch.Tensor] = []
    cls_token = bb.hook.site != "attnpool"
    handle = bb.hook_module.register_forward_hook(lambda m, i, o: captured.append((o[:, 0] if cls_token else o).float().cpu()))
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                bb.model.encode_image(images.to(device))
    finally:
        handle.remove()
    _sync(device)
    return time.perf_counter() - t0, torch.cat(captured).numpy()


def loader_only(dataset: Dataset, setup: BenchSetup, naive: bool, rows: int | None = None) -> float:
    """Images/s of decode + preprocess alone (no model), for the naive or the cache loader (first ``rows``)."""
    rows = len(dataset) if rows is None else rows
    if naive:
        loader = DataLoader(dataset, batch_size=setup.batch_size, shuffle=False)
    else:
        loader, _ = shard_loader(dataset, 0, rows, dataset.transform, batch_size=setup.batch_size,
                                 num_workers=setup.num_workers, pin_memory=setup.device.startswith("cuda"))
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return rows / (time.perf_counter() - t0)


def model_only(bb: Backbone, batches: list[torch.Tensor], device: torch.device, naive: bool) -> tuple[float, float]:
    """``(images/s, FLOP per image)`` of the model alone on batches already on the device."""

    def forward(x: torch.Tensor):
        if naive:
            with torch.no_grad():
                return bb.model.encode_image(x)
        return bb.activations(x)

    forward(batches[0])  # warm-up (cuDNN autotuning, lazy init)
    with FlopCounterMode(display=False) as counter:
        forward(batches[0])
    flops = counter.get_total_flops() / len(batches[0])
    _sync(device)
    t0 = time.perf_counter()
    for x in batches:
        forward(x)
    _sync(device)
    return sum(len(x) for x in batches) / (time.perf_counter() - t0), flops


def bench_model(setup: BenchSetup, spec: DatasetSpec, split: str, work: Path) -> dict:
    """Every figure of one model: end-to-end images/s of both paths, their halves, agreement."""
    device = torch.device(setup.device)
    bb = load_backbone(setup.model, None, setup.hook)  # random weights: timing only
    dataset = load_dataset(spec, split, transform=bb.preprocess)
    n = min(setup.images, len(dataset))
    dataset = torch.utils.data.Subset(dataset, range(n)) if n < len(dataset) else dataset
    base = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset

    naive_s, cache_s, agree = [], [], None
    for r in range(setup.repeats):
        bb.prepare(device, "fp32")
        seconds, reference = naive_loop(bb, dataset, setup.batch_size, device)
        naive_s.append(seconds)
        out = work / f"{setup.model}-{r}"
        t0 = time.perf_counter()
        record = cache_shard(bb, base, out, 0, 1, dataset_name=spec.kind, split=split, limit=n, batch_size=setup.batch_size,
                             num_workers=setup.num_workers, dtype="float32", device=setup.device, precision=setup.precision)
        cache_s.append(time.perf_counter() - t0)
        if agree is None:
            cached = np.load(out / record["file"])
            agree = float(np.abs(cached - reference).max() / (np.abs(reference).max() + 1e-12))

    batches = [torch.stack([base[i][0] for i in range(s, min(s + setup.batch_size, n))]).to(device)
               for s in range(0, min(n, 4 * setup.batch_size), setup.batch_size)]  # preprocessed, in memory
    bb.prepare(device, "fp32")
    naive_model, naive_flops = model_only(bb, batches, device, naive=True)
    bb.prepare(device, setup.precision)
    cache_model, cache_flops = model_only(bb, batches, device, naive=False)
    naive_ips, cache_ips = n / statistics.median(naive_s), n / statistics.median(cache_s)
    naive_load, cache_load = loader_only(dataset, setup, naive=True), loader_only(base, setup, naive=False, rows=n)
    peak = gpu_peak(device)
    return {
        "model": setup.model, "hook": str(bb.hook), "d": bb.d, "images": n, "batch_size": setup.batch_size,
        "num_workers": setup.num_workers, "device": device_name(device), "precision": bb.precision,
        "torch_threads": torch.get_num_threads(), "repeats": setup.repeats,
        "naive": {"images_per_s": round(naive_ips, 1), "loader_images_per_s": round(naive_load, 1),
                  "model_images_per_s": round(naive_model, 1), "gflop_per_image": round(naive_flops / 1e9, 4)},
        "cache": {"images_per_s": round(cache_ips, 1), "loader_images_per_s": round(cache_load, 1),
                  "model_images_per_s": round(cache_model, 1), "gflop_per_image": round(cache_flops / 1e9, 4),
                  "achieved_tflop_per_s": round(cache_model * cache_flops / 1e12, 4),
                  "fraction_of_bf16_peak": round(cache_model * cache_flops / peak, 4) if peak else None,
                  "bottleneck": "data loading" if cache_load < cache_model else "model",
                  "paper_hours_per_model": round(PAPER_IMAGES / cache_ips / 3600, 2)},
        "speedup_vs_naive": round(statistics.median(a / b for a, b in zip(naive_s, cache_s)), 2),  # paired: robust to load drift
        "max_rel_diff_vs_naive": agree,
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def gpu_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def run_benchmark(models: list[tuple[str, str]], images: str, n: int, setup: dict) -> list[dict]:
    """Benchmark each ``(model, hook)`` on ``n`` images of kind ``images`` (cifar10 | jpeg)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = make_images(Path(tmp) / "data", images, n)
        results = []
        for model, hook in models:
            results.append(bench_model(BenchSetup(model, hook, n, **setup), spec, _split(images), Path(tmp) / "out"))
        return results
