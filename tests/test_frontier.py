"""The sweep frontier's numbers (saesuite.evaluate.frontier) against a direct numpy computation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from numpy_sae import encode_numpy
from safetensors.numpy import load_file
from test_eval_known import write_cache
from test_sae import random_sae

from saesuite.cache.reader import ActivationCache
from saesuite.device import resolve_device
from saesuite.evaluate.frontier import frontier_point, frontier_table
from saesuite.sae.model import save_sae

D, F, N = 16, 48, 90
BAD = (3, 50)  # rows of unreadable images: zero rows the frontier must leave out


def numpy_point(weights: dict, x: np.ndarray, architecture: str, k: int | None) -> dict:
    f = encode_numpy(weights, x, architecture, k)
    x_hat = f @ weights["W_dec"] + weights["b_dec"]
    err = ((x - x_hat) ** 2).sum()
    return {"l0": (f > 0).sum(1).mean(), "mse": err / x.size,
            "explained_variance": 1 - err / ((x - x.mean(0)) ** 2).sum()}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    base = tmp_path_factory.mktemp("frontier")
    x = np.random.default_rng(0).normal(size=(N, D)) * np.linspace(0.5, 2, D)
    x[list(BAD)] = 0
    write_cache(base / "cache", x, np.arange(N) % 10, bad_rows=BAD)
    dirs = {}
    for i, (name, arch, k) in enumerate([("relu", "relu", None), ("topk-4", "topk", 4)]):
        cfg = {"d_in": D, "d_sae": F, "architecture": "standard" if arch == "relu" else "topk", "k": k,
               "model": "tiny-ViT", "hook": "resid_cls:2",
               "training": {"architecture": arch, "k": k, "l1_coefficient": 1e-3 if arch == "relu" else 0.0}}
        save_sae(random_sae(D, F, arch, k, seed=i), base / name, cfg)
        dirs[name] = base / name
    keep = np.setdiff1d(np.arange(N), BAD)
    return base, dirs, x.astype(np.float32)[keep]


@pytest.mark.parametrize(("name", "architecture", "k"), [("relu", "relu", None), ("topk-4", "topk", 4)])
def test_a_frontier_point_equals_the_direct_computation_over_the_usable_rows(sweep, name, architecture, k):
    base, dirs, x = sweep
    weights = {key: v.astype(np.float64) for key, v in load_file(str(dirs[name] / "sae_weights.safetensors")).items()}
    expected = numpy_point(weights, x.astype(np.float64), architecture, k)
    got = frontier_point(dirs[name], ActivationCache.open(base / "cache"), chunk_rows=7)  # chunks cross shards
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4), key
    if architecture == "topk":
        assert got["l0"] <= k


def test_the_frontier_table_has_a_row_per_sae_with_its_settings(sweep):
    base, dirs, _ = sweep
    table = frontier_table(dirs, base / "cache", chunk_rows=32)
    assert list(table["name"]) == ["relu", "topk-4"] and list(table["architecture"]) == ["relu", "topk"]
    assert table["k"].isna().tolist() == [True, False] and table.loc[1, "k"] == 4
    cache = ActivationCache.open(base / "cache")
    for row, path in zip(table.itertuples(), dirs.values()):
        assert row.l0 == pytest.approx(frontier_point(path, cache)["l0"])
    assert json.loads((dirs["relu"] / "cfg.json").read_text())["training"]["l1_coefficient"] == table.loc[0, "l1_coefficient"]
    # device "auto" (config/cifar10.yaml's) is resolved first: the table of the device it names
    auto = frontier_table(dirs, base / "cache", chunk_rows=32, device="auto")
    pd.testing.assert_frame_equal(auto, frontier_table(dirs, base / "cache", chunk_rows=32, device=str(resolve_device("auto"))))


def test_a_topk_sae_has_no_l1_coefficient_in_the_frontier(sweep, tmp_path):
    """TopK's loss has no L1 term: its coefficient is empty in frontier.csv, though its cfg.json stores one (0.0)."""
    import pandas as pd

    base, dirs, _ = sweep
    assert json.loads((dirs["topk-4"] / "cfg.json").read_text())["training"]["l1_coefficient"] == 0.0
    frontier_table(dirs, base / "cache", chunk_rows=32).to_csv(tmp_path / "frontier.csv", index=False)
    rows = (tmp_path / "frontier.csv").read_text().splitlines()
    header = rows[0].split(",")
    topk = dict(zip(header, rows[2].split(",")))
    assert topk["name"] == "topk-4" and topk["l1_coefficient"] == "" and topk["k"] == "4"
    table = pd.read_csv(tmp_path / "frontier.csv")
    assert pd.isna(table.loc[1, "l1_coefficient"]) and table.loc[0, "l1_coefficient"] == 1e-3
