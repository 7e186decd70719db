"""Per-latent activation distributions (histograms, activation-band samples) against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saesuite.evaluate.distributions import (
    BandSamples,
    CodeSpill,
    activation_distributions,
    latent_histograms,
    read_latent_stats,
    sample_keys,
)
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.sae.model import save_sae
from test_eval_known import split_sae, write_cache


def sparse_codes(seed: int, n: int = 300, f: int = 7) -> np.ndarray:
    """``[n, f]`` float32 codes, each latent firing on a different fraction of rows at its own scale."""
    rng = np.random.default_rng(seed)
    codes = np.maximum(rng.normal(size=(n, f)) - np.linspace(-0.5, 1.5, f), 0) * rng.uniform(0.5, 3, f)
    return codes.astype(np.float32)


def positive(codes: np.ndarray, rows: np.ndarray | None = None):
    """``(rows, latents, values)`` of the positive entries of ``codes`` (rows offset to ``rows``)."""
    r, c = np.nonzero(codes > 0)
    return (r if rows is None else rows[r]), c, codes[r, c]


def chunked(codes: np.ndarray, sizes: list[int]):
    """``(rows, latents, values)`` of consecutive row chunks of the given sizes."""
    start = 0
    for size in sizes:
        r, c, v = positive(codes[start : start + size])
        yield r + start, c, v
        start += size


def direct_bands(codes: np.ndarray, bands: int, samples: int, seed: int) -> dict:
    """For each latent and band: every row in it, by a loop, and the ``samples`` rows of smallest key."""
    n, f = codes.shape
    top = codes.max(0)
    out = {"counts": np.zeros((f, bands), int), "rows": np.full((f, bands, samples), -1), "values": np.zeros((f, bands, samples))}
    for i in range(f):
        members = {b: [] for b in range(bands)}
        for r in range(n):
            v = codes[r, i]
            if v > 0:
                members[min(int(np.float32(v) / np.float32(top[i]) * np.float32(bands)), bands - 1)].append(r)
        for b, rows in members.items():
            key = {r: int(sample_keys(np.array([r]), np.array([i]), f, seed)[0]) for r in rows}
            chosen = sorted(rows, key=lambda r: key[r])[:samples]
            out["counts"][i, b] = len(rows)
            out["rows"][i, b, : len(chosen)] = chosen
            out["values"][i, b, : len(chosen)] = codes[chosen, i]
    return out


def test_histograms_are_numpy_histograms_per_latent():
    codes = sparse_codes(0, 200)
    top = codes.max(0)
    got = latent_histograms(((c, v) for _, c, v in chunked(codes, [33] * 6 + [2])), top, 10)
    for i in range(codes.shape[1]):
        want, _ = np.histogram(codes[codes[:, i] > 0, i], bins=np.linspace(0, top[i], 11))
        assert got[i].tolist() == want.tolist()


@pytest.mark.parametrize("sizes", [[300], [7] * 42 + [6], [1, 150, 149]])
def test_band_samples_streamed_in_any_chunks_equal_the_direct_selection(sizes):
    codes = sparse_codes(1)
    codes[:, 3] = 0  # a dead latent: empty bands
    want = direct_bands(codes, bands=5, samples=3, seed=11)
    sampler = BandSamples(codes.max(0), bands=5, samples=3, seed=11)
    for rows, cols, values in chunked(codes, sizes):
        sampler.update(rows, cols, values)
    got = sampler.result()
    assert got["band_counts"].tolist() == want["counts"].tolist()
    assert got["band_counts"].sum(1).tolist() == (codes > 0).sum(0).tolist()
    assert got["band_rows"].tolist() == want["rows"].tolist()
    np.testing.assert_array_equal(got["band_values"], want["values"].astype(np.float32))
    np.testing.assert_allclose(got["band_edges"], codes.max(0)[:, None] * np.linspace(0, 1, 6), rtol=1e-6)
    assert (got["band_rows"][3] == -1).all() and got["band_counts"][3].sum() == 0


def test_band_samples_are_uniform_within_a_band_and_independent_across_latents():
    # 10 rows in band 0 of two latents with identical activations; 3 of them drawn per seed
    codes = np.zeros((10, 2), np.float32)
    codes[:, :] = np.linspace(0.01, 0.1, 10)[:, None]
    codes[0] = 1.0  # the latents' largest value: alone in the top band
    picks, same = np.zeros(10), 0
    for seed in range(300):
        sampler = BandSamples(codes.max(0), bands=5, samples=3, seed=seed)
        sampler.update(*positive(codes))
        rows = sampler.result()["band_rows"]
        picks[rows[0, 0]] += 1
        same += set(rows[0, 0]) == set(rows[1, 0])
    assert picks[0] == 0  # not in band 0
    assert np.all(np.abs(picks[1:] - 100) < 40), picks  # each of 9 rows: 300 x 3/9 = 100 expected, sd 8
    assert same < 20  # C(9,3) = 84 subsets: two independent draws agree 1/84 of the time (3.6 of 300)


def test_the_spill_gives_back_every_positive_code_of_the_rows_given(tmp_path):
    codes = sparse_codes(2, 50)
    with CodeSpill(tmp_path) as spill:
        spill.append(np.arange(0, 20), torch.from_numpy(codes[:20]))
        kept = np.array([20, 22, 23, 40, 49])  # the other rows are bad images, never given
        spill.append(kept, torch.from_numpy(codes[kept]))
        got = [np.concatenate(parts) for parts in zip(*spill.chunks())]
    r, c, v = positive(codes[:20])
    r2, c2, v2 = positive(codes[kept], kept)
    for a, b in zip(got, (np.r_[r, r2], np.r_[c, c2], np.r_[v, v2])):
        np.testing.assert_array_equal(a, b)
    assert list(tmp_path.iterdir()) == []  # the spill leaves no file behind


def test_evaluation_writes_the_latent_stats_of_a_direct_computation(tmp_path):
    """A split SAE (``f = [relu(x), relu(-x)]``, exact in float32) over a cache with bad rows, in chunks of 7."""
    rng = np.random.default_rng(3)
    n, d, bad = 90, 6, [4, 50, 51]
    x = (rng.normal(size=(n, d)) * rng.uniform(0.2, 2, d)).astype(np.float32)
    x[bad] = 0
    labels = rng.integers(0, 10, n)
    write_cache(tmp_path / "cache", x, labels, bad_rows=bad, model="my-model", hook="features")  # no backbone
    sae, cfg = split_sae(d, model="my-model", hook="features")
    save_sae(sae, tmp_path / "sae", cfg)
    eval_cfg = EvalConfig(chunk_rows=7, histogram_bins=8, bands=4, band_samples=2, band_seed=5)
    evaluate_sae(tmp_path / "sae", tmp_path / "cache", tmp_path / "eval", eval_cfg)
    stats = read_latent_stats(tmp_path / "eval" / "latent_stats.npz")

    valid = np.setdiff1d(np.arange(n), bad)
    codes = np.zeros((n, 2 * d), np.float32)
    codes[valid] = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], 1)[valid]
    np.testing.assert_array_equal(stats["max_activation"], codes.max(0))
    for i in range(2 * d):
        want, _ = np.histogram(codes[codes[:, i] > 0, i], bins=np.linspace(0, codes[:, i].max(), 9))
        assert stats["histogram"][i].tolist() == want.tolist()
    mass = np.zeros((10, 2 * d))
    np.add.at(mass, labels[valid], codes[valid].astype(np.float64))
    np.testing.assert_allclose(stats["class_activation"], mass, rtol=1e-12)
    fires = np.zeros((10, 2 * d), int)
    np.add.at(fires, labels[valid], (codes[valid] > 0).astype(int))
    assert stats["class_fire_count"].tolist() == fires.tolist()
    want = direct_bands(codes, bands=4, samples=2, seed=5)
    assert stats["band_rows"].tolist() == want["rows"].tolist()
    assert stats["band_counts"].tolist() == want["counts"].tolist()
    assert not set(stats["band_rows"].ravel()) & set(bad)
    assert int(stats["band_seed"]) == 5
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [
        "inputs.npz", "latent_stats.npz", "latents.csv", "latents.npz", "metrics.json", "names.json"]  # no spill left


def test_a_latent_stats_file_with_a_missing_or_misshapen_array_is_refused(tmp_path):
    codes = sparse_codes(4, 40)
    with CodeSpill(tmp_path) as spill:
        spill.append(np.arange(40), torch.from_numpy(codes))
        arrays = activation_distributions(spill, codes.max(0), bins=6, bands=3, samples=2, seed=0)
    arrays.update(class_activation=np.zeros((10, 7)), class_fire_count=np.zeros((10, 7), np.int64))
    np.savez(tmp_path / "ok.npz", **arrays)
    assert read_latent_stats(tmp_path / "ok.npz")["histogram"].shape == (7, 6)
    np.savez(tmp_path / "short.npz", **{k: v for k, v in arrays.items() if k != "band_rows"})
    with pytest.raises(ValueError, match="no band_rows"):
        read_latent_stats(tmp_path / "short.npz")
    np.savez(tmp_path / "bad.npz", **{**arrays, "class_activation": np.zeros((10, 6))})
    with pytest.raises(ValueError, match="class_activation has shape"):
        read_latent_stats(tmp_path / "bad.npz")
