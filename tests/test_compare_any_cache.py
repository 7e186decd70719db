"""``compare`` on caches no open_clip model made (synthetic arrays, a user's hook names), with
rows of zeros, checked against independent computations; its JSON, figure and paper macros."""

import gc
import json

import numpy as np
import pandas as pd
import pytest
import torch

from saesuite.compare import figures as compare_figures
from saesuite.cache.format import write_array_cache
from saesuite.compare.saes import SCORES, compare_saes
from saesuite.compare.features import CompareSettings
from saesuite.compare.knn import mutual_knn
from saesuite.device import resolve_device
from saesuite.report.paper import write_numbers
from saesuite.sae.model import SAE, save_sae
from saesuite.schema import validate

N = 160
META = {"pretrained": None, "dataset": "my-images", "split": "test", "classes": []}


def relu_sae(d: int, f: int, seed: int, threshold: float, model: str, hook: str, out) -> dict:
    """A random ReLU SAE written as an SAE directory; returns its weights as numpy arrays."""
    rng = np.random.default_rng(seed)
    weights = {"W_enc": rng.normal(size=(d, f)) / np.sqrt(d), "b_enc": np.full(f, -threshold),
               "W_dec": rng.normal(size=(f, d)) / np.sqrt(d), "b_dec": np.zeros(d)}
    sae = SAE(d, f)
    with torch.no_grad():
        for name, value in weights.items():
            getattr(sae, name).copy_(torch.from_numpy(value).float())
    save_sae(sae, out, {"d_in": d, "d_sae": f, "architecture": "relu", "k": None, "model": model, "hook": hook})
    return {k: v.astype(np.float32).astype(np.float64) for k, v in weights.items()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Two 'models' of 160 images reading 6 shared latents; rows of zeros in both activations and codes."""
    base = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(N, 6))
    xa = (z @ rng.normal(size=(6, 12)) + 0.5 * rng.normal(size=(N, 12))).astype(np.float32)
    xb = (z @ rng.normal(size=(6, 10)) + 0.5 * rng.normal(size=(N, 10))).astype(np.float32)
    xa[[3, 7, 50]] = 0  # all-zero activation rows (images a user's model maps to zero)
    xb[[7, 90]] = 0
    out = {"x": (xa.astype(np.float64), xb.astype(np.float64))}
    for name, x, d, f, hook in (("a", xa, 12, 24, "encoder.layer3.output"), ("b", xb, 10, 20, "blocks.5")):
        write_array_cache(base / f"cache_{name}", x, {**META, "model": f"my-model-{name}", "hook": hook}, n_shards=2)
        # a high threshold: on some images no latent fires
        out[f"w_{name}"] = relu_sae(d, f, 1 if name == "a" else 2, 1.6, f"my-model-{name}", hook, base / f"sae_{name}")
    settings = CompareSettings(k=5, knn_k=5, knn_rows=N, rbf_rows=N, rbf_batch=N, permutations=9, interval_splits=6)
    out["result"] = compare_saes(base / "cache_a", base / "sae_a", base / "cache_b", base / "sae_b", base / "cmp",
                                 settings=settings, device="auto")
    out["dir"] = base / "cmp"
    return out


def codes(x: np.ndarray, w: dict) -> np.ndarray:
    return np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0)


def brute_mutual_knn(xa: np.ndarray, xb: np.ndarray, k: int) -> float:
    """Mean over rows of the shared fraction of the k most cosine-similar other rows."""
    def neighbours(x):
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = u @ u.T
        np.fill_diagonal(sim, -np.inf)
        return [set(np.argsort(-row)[:k]) for row in sim]
    return float(np.mean([len(p & q) / k for p, q in zip(neighbours(xa), neighbours(xb))]))


def rbf_cka_one_batch(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased RBF CKA on one batch: sigma = median pairwise distance; Song et al.'s unbiased HSIC."""
    def gram(v):
        d2 = ((v[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        sigma2 = np.median(d2[~np.eye(len(v), dtype=bool)])
        return np.exp(-d2 / (2 * sigma2))

    def hsic(k, l):
        n = len(k)
        k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
        one = np.ones(n)
        return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))
    k, l = gram(x), gram(y)
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_compare_runs_on_synthetic_caches_and_counts_rows_of_zeros(synthetic):
    result = synthetic["result"]
    validate(json.loads((synthetic["dir"] / "comparison.json").read_text()), "comparison")
    xa, xb = synthetic["x"]
    ca, cb = codes(xa, synthetic["w_a"]), codes(xb, synthetic["w_b"])
    silent_a, silent_b = ~ca.any(1), ~cb.any(1)
    assert silent_a.sum() > 5 and silent_b.sum() > 5  # images on which no latent fires
    assert result["zero_rows"] == {"activations_a": 3, "activations_b": 2,
                                   "codes_a": int(silent_a.sum()), "codes_b": int(silent_b.sum())}
    assert (result["model_a"], result["hook_a"], result["hook_b"]) == ("my-model-a", "encoder.layer3.output", "blocks.5")
    keep = xa.any(1) & xb.any(1)  # rows 3, 7, 50, 90 have no cosine
    knn = result["mutual_knn"]
    assert (knn["n"], knn["excluded_rows"]) == (N - 4, 4)
    assert knn["value"] == pytest.approx(brute_mutual_knn(xa[keep], xb[keep], 5))
    assert knn["analytic_chance"] == pytest.approx(5 / (N - 5))
    both = ~silent_a & ~silent_b
    assert (result["mutual_knn_codes"]["n"], result["mutual_knn_codes"]["excluded_rows"]) == (both.sum(), N - both.sum())
    for key in ("linear_cka", "topk_overlap", "rbf_cka_codes"):  # defined on rows of zeros: no row left out
        assert result[key]["n"] == N and result[key]["excluded_rows"] == 0


def test_rbf_cka_is_the_named_estimator(synthetic):
    result = synthetic["result"]
    xa, xb = synthetic["x"]
    assert result["rbf_cka"]["value"] == pytest.approx(rbf_cka_one_batch(xa, xb), rel=1e-9)
    est = result["rbf_cka_estimator"]
    assert (est["debiased"], est["minibatch"], est["rows"], est["batch_rows"], est["batches"]) == (True, True, N, N, 1)
    assert est["bandwidth_fraction"] == 1.0 and "median" in est["bandwidth"] and "Nguyen" in est["name"]
    assert "not Kornblith" in result["rbf_cka"]["estimator"]


def test_every_score_carries_its_interval_and_p_value_floor(synthetic):
    result = synthetic["result"]
    for key, score in SCORES.items():
        record = result[key]
        assert record["permutations"] == 9 and record["p_floor"] == pytest.approx(0.1)
        assert record["p_at_floor"] == (record["p_value"] == pytest.approx(0.1))
        interval = record["interval"]
        if record["value"] is None:
            continue
        assert interval["low"] <= record["value"] <= interval["high"], key
        assert (interval["method"], interval["rate"], interval["splits"], interval["level"]) == (
            "split-half subsampling", score.rate.name, 6, 0.95)
        assert interval["se"] == pytest.approx(interval["sd_at_m"] * (interval["m"] / record["n"]) ** score.rate.exponent)
    assert result["topk_overlap"]["interval"]["rate"] == "n^0" and result["debiased_cka"]["interval"]["rate"] == "sqrt(n)"


def test_split_half_table_gives_the_interval(synthetic):
    """The interval recomputed from halves.csv by hand: sd from the half differences, t at 6 d.f."""
    import pandas as pd
    from scipy import stats

    halves = pd.read_csv(synthetic["dir"] / "halves.csv")
    record = synthetic["result"]["debiased_cka"]
    diff = halves[halves["half"] == 0]["debiased_cka"].to_numpy() - halves[halves["half"] == 1]["debiased_cka"].to_numpy()
    assert len(diff) == 6 and (halves["n_debiased_cka"] == N // 2).all()
    se = np.sqrt(np.mean(diff**2) / 2) / np.sqrt(2)
    t = stats.t.ppf(0.975, 6)
    assert (record["interval"]["low"], record["interval"]["high"]) == pytest.approx(
        (record["value"] - t * se, record["value"] + t * se))


def test_the_null_and_halves_are_the_same_bytes_on_worker_processes(synthetic, tmp_path):
    """The permutation null and the split halves run on 3 forked workers give the files one process gives
    (and device "auto" is resolved before the codes are made)."""
    base = synthetic["dir"].parent
    settings = CompareSettings(k=5, knn_k=5, knn_rows=N, rbf_rows=N, rbf_batch=N, permutations=9, interval_splits=6)
    result = compare_saes(base / "cache_a", base / "sae_a", base / "cache_b", base / "sae_b", tmp_path / "cmp",
                          settings=settings, workers=3, device=str(resolve_device("auto")))
    for name in ("null.csv", "halves.csv", "pairs.csv"):
        assert (tmp_path / "cmp" / name).read_bytes() == (synthetic["dir"] / name).read_bytes(), name
    assert len(pd.read_csv(tmp_path / "cmp" / "null.csv")) == 9
    assert result == synthetic["result"]


def test_similarity_figure_draws_the_interval_and_paper_prints_the_floor(synthetic, tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(compare_figures, "save", lambda fig, out: drawn.setdefault("fig", fig))
    compare_figures.similarity_bars(synthetic["dir"] / "comparison.json", tmp_path / "similarity.png")
    ax = drawn["fig"].axes[0]
    bars = [c.lines[2][0].get_segments()[0][:, 1] for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr]
    result = synthetic["result"]
    expected = [(result[name + suffix]["interval"]["low"], result[name + suffix]["interval"]["high"])
                for suffix in ("", "_codes") for name in compare_figures.SIMILARITIES if result[name + suffix]["interval"]]
    assert len(bars) == len(expected) == 8
    assert sorted(map(tuple, np.round(bars, 12))) == sorted(map(tuple, np.round(expected, 12)))
    assert "split-half subsampling" in ax.get_ylabel()
    text = write_numbers({}, synthetic["dir"] / "comparison.json", tmp_path / "numbers.tex")  # the comparison's macros
    for key in ("topk_overlap", "debiased_cka"):
        record, name = result[key], "".join(p.capitalize() for p in key.split("_"))
        expected_p = r"p \le 1/10" if record["p_at_floor"] else f"p = {record['p_value']:.2g}"
        assert f"\\newcommand{{\\Cmp{name}P}}{{{expected_p}}}" in text
        assert f"\\newcommand{{\\Cmp{name}IntervalLow}}{{{record['interval']['low']:.4g}}}" in text
    assert "\\newcommand{\\CmpDebiasedCkaIntervalRate}{\\sqrt{n}}" in text
    assert "\\newcommand{\\CmpRbfCkaEstimatorBatches}{1}" in text


def test_mutual_knn_leaves_rows_of_zeros_out_instead_of_failing():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(60, 5)), rng.normal(size=(60, 4))
    x[[2, 9]] = 0
    y[[9, 30]] = 0
    keep = np.ones(60, bool)
    keep[[2, 9, 30]] = False
    assert mutual_knn(x, y, 4) == pytest.approx(brute_mutual_knn(x[keep], y[keep], 4))


def test_the_comparison_along_the_sweep_against_a_direct_computation(synthetic, tmp_path):
    """compare_along_sweep: each name both models have, its L0s, top-k overlap both ways and the
    debiased CKA of the codes, recomputed here from numpy codes with plain set arithmetic."""
    from saesuite.compare.sweep import compare_along_sweep

    base = synthetic["dir"].parent
    xa, xb = synthetic["x"]
    w_sparse = relu_sae(12, 24, 3, 2.2, "my-model-a", "encoder.layer3.output", tmp_path / "a_sparse")
    saes_a = {"main": base / "sae_a", "sparse": tmp_path / "a_sparse", "a_only": base / "sae_a"}
    saes_b = {"main": base / "sae_b", "sparse": base / "sae_b"}
    k = 5
    table = compare_along_sweep(base / "cache_a", base / "cache_b", saes_a, saes_b, k=k)
    assert table["name"].tolist() == ["main", "sparse"]  # names both models trained, in A's order

    def top_sets(c):  # the k largest positive entries of each column, ties to the lower row
        sets = []
        for j in range(c.shape[1]):
            rows = [r for r in sorted(range(len(c)), key=lambda r: (-c[r, j], r)) if c[r, j] > 0][:k]
            sets.append(set(rows) if len(rows) == k else None)
        return sets

    def best(sa, sb):
        alive_b = [s for s in sb if s is not None]
        return np.mean([max((len(s & t) / k for t in alive_b), default=0.0) for s in sa if s is not None])

    def debiased(x, y):  # unbiased HSIC (Song et al. 2012) of linear kernels, written out
        def hsic(K, L):
            n = len(K)
            K, L = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
            return (np.trace(K @ L) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2 * (K.sum(0) @ L.sum(0)) / (n - 2)) / (n * (n - 3))
        K, L = x @ x.T, y @ y.T
        return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))

    for name, wa in (("main", synthetic["w_a"]), ("sparse", w_sparse)):
        row = table.set_index("name").loc[name]
        ca, cb = codes(xa, wa), codes(xb, synthetic["w_b"])
        assert row["l0_a"] == pytest.approx((ca > 0).sum(1).mean()) and row["l0_b"] == pytest.approx((cb > 0).sum(1).mean())
        ta, tb = top_sets(ca), top_sets(cb)
        assert row["topk_overlap"] == pytest.approx(best(ta, tb))
        assert row["topk_overlap_b_to_a"] == pytest.approx(best(tb, ta))
        assert row["debiased_cka_codes"] == pytest.approx(debiased(ca, cb), rel=1e-6)
    assert table.loc[1, "l0_a"] < table.loc[0, "l0_a"]  # the higher threshold fires less
    # streamed in chunks of 32 rows (sparse and dense chunks mixed): the same table
    chunked = compare_along_sweep(base / "cache_a", base / "cache_b", saes_a, saes_b, k=k, chunk_rows=32)
    pd.testing.assert_frame_equal(chunked, table, rtol=1e-6)  # float32 GEMMs of dense chunks: 4e-7 measured
    # device "auto" (config/cifar10.yaml's) is resolved first: the table of the device it names
    auto = compare_along_sweep(base / "cache_a", base / "cache_b", saes_a, saes_b, k=k, device="auto")
    resolved = compare_along_sweep(base / "cache_a", base / "cache_b", saes_a, saes_b, k=k, device=str(resolve_device("auto")))
    pd.testing.assert_frame_equal(auto, resolved)
    gc.collect()
    assert torch.is_grad_enabled()  # nothing it ran leaves autograd off for the caller
