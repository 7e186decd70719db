"""The benchmark compares like with like: same numbers as the naive loop, less work where the forward stops early."""

import torch

from saesuite.cache.bench import run_benchmark


def test_benchmark_paths_agree_and_the_cache_path_skips_the_layers_after_the_hook():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: spinning OpenMP threads would dominate
    try:
        results = run_benchmark(
            [("tiny-RN", "attnpool"), ("tiny-ViT", "resid_cls:1")], "cifar10", 40,
            dict(batch_size=20, num_workers=0, device="cpu", precision="fp32", repeats=1),
        )
    finally:
        torch.set_num_threads(threads)
    rn, vit = results
    for r in results:
        assert r["images"] == 40 and r["max_rel_diff_vs_naive"] == 0.0  # identical activations
        assert r["cache"]["bottleneck"] in ("data loading", "model")
    # attnpool is the tower's last module: nothing to skip
    assert rn["cache"]["gflop_per_image"] == rn["naive"]["gflop_per_image"]
    # resid_cls:1 stops after 2 of 4 blocks: well under the full forward
    assert vit["cache"]["gflop_per_image"] < 0.75 * vit["naive"]["gflop_per_image"]
