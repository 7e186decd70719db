"""The static feature explorer: its data against the evaluation and comparison files, and the page in Chromium.

The browser tests drive Debian's ``chromium`` through ``chromium-driver`` and selenium (nothing is
downloaded at test time); they skip, saying how to install them, where the browser is missing.
Screenshots go to ``results/test-artifacts/explorer/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from saesuite.compare.saes import compare_saes
from saesuite.data.datasets import load_dataset
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.report.explorer import ExplorerConfig, ModelInputs, build_explorer
from saesuite.report.explorer_data import best_partners, label_distribution, pair_page
from saesuite.compare.features import CompareSettings
from saesuite.compare.overlap import overlap_counts
from saesuite.sae.model import SAE, save_sae

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("EXPLORER_ARTIFACTS", REPO / "results" / "test-artifacts" / "explorer"))
MODELS = (("tiny-RN", "attnpool"), ("tiny-ViT", "resid_cls:-2"))
F = 48  # latents per SAE
EVAL = EvalConfig(chunk_rows=64)
DEAD, RARE, RARE_IMAGES = 5, 7, 3  # a latent that never fires, and one that fires on fewer than k = 9 images


def read_js(path: Path) -> list:
    """The JSON arguments of a data file ``EXPLORER.name(arg, ...);``."""
    text = path.read_text()
    m = re.fullmatch(r"EXPLORER\.(\w+)\((.*)\);\n", text, re.S)
    assert m, f"{path} is not an EXPLORER call"
    return json.loads("[" + m.group(2) + "]")


def random_sae(cache_dir: Path, model: str, hook: str, out: Path, seed: int) -> Path:
    """An SAE with random directions and b_dec at the mean, so latents fire on varied fractions of images."""
    from saesuite.cache.reader import ActivationCache

    cache = ActivationCache.open(cache_dir)
    x, hook = torch.from_numpy(cache.read_all()).float(), cache.manifest["hook"]
    g = torch.Generator().manual_seed(seed)
    sae = SAE(x.shape[1], F)
    with torch.no_grad():
        w = torch.randn(x.shape[1], F, generator=g)
        w /= w.norm(dim=0)
        sae.W_dec.copy_(w.T)
        sae.b_dec.copy_(x.mean(0))
        sae.W_enc.copy_(w / x.std(0).mean())
        sae.b_enc.copy_(-torch.linspace(0, 1.5, F))  # denser to sparser latents
        sae.b_enc[DEAD] = -1e6  # never fires
        pre = torch.sort(sae.pre_acts(x)[:, RARE], descending=True).values  # fires on exactly RARE_IMAGES images
        sae.b_enc[RARE] -= (pre[RARE_IMAGES - 1] + pre[RARE_IMAGES]) / 2
    save_sae(sae, out, {"d_in": x.shape[1], "d_sae": F, "architecture": "relu", "model": model, "hook": hook})
    return out


@pytest.fixture(scope="module")
def built(caches, fixture_spec, tmp_path_factory):
    base = tmp_path_factory.mktemp("explorer")
    inputs, pairs = [], []
    for seed, (model, hook) in enumerate(MODELS):
        cache = caches[(model, "test")]
        sae = random_sae(cache, model, hook, base / "sae" / model, seed)
        evaluate_sae(sae, cache, base / "eval" / model, EVAL)
        inputs.append(ModelInputs(model, base / "eval" / model))
        pairs += [cache, sae]
    settings = CompareSettings(k=9, knn_k=5, permutations=3, interval_splits=0)
    compare_saes(*pairs, base / "compare", settings=settings)
    dataset = load_dataset(fixture_spec, "test")
    cfg = ExplorerConfig(features_per_file=16)
    # the explorer reads the evaluation's and comparison's files only: no SAE or cache is given to it
    record = build_explorer(tuple(inputs), base / "compare", lambda i: dataset[i][0], base / "site", cfg)
    return {"site": base / "site", "inputs": inputs, "compare": base / "compare", "record": record, "cfg": cfg,
            "dataset": dataset}


# -- the pieces against independent computations ---------------------------------------------------


def test_best_partners_are_the_argmax_of_the_overlap_with_ties_to_the_lower_index():
    rng = np.random.default_rng(1)
    n, k = 30, 4
    ta = np.stack([rng.choice(n, k, replace=False) for _ in range(12)])
    tb = np.stack([rng.choice(n, k, replace=False) for _ in range(9)])
    ta[3] = -1  # dead
    alive_a, alive_b = (ta >= 0).all(1), (tb >= 0).all(1)
    pa, oa, pb, ob = best_partners(ta, tb, alive_a, alive_b, n, k)
    dense = np.array([[len(set(a) & set(b)) if alive_a[i] else 0 for b in tb] for i, a in enumerate(ta)])
    for i in range(12):
        if not alive_a[i]:
            assert pa[i] == -1 and np.isnan(oa[i])
        elif dense[i].max() == 0:
            assert pa[i] == -1 and oa[i] == 0
        else:
            assert pa[i] == int(np.argmax(dense[i])) and oa[i] == dense[i].max() / k
    for j in range(9):
        col = dense[:, j]
        assert (pb[j], ob[j]) == ((int(np.argmax(col)), col.max() / k) if col.max() else (-1, 0))
    assert overlap_counts(ta[alive_a], tb, n).max() == dense.max()


def test_label_distribution_is_the_largest_shares_of_activation_mass():
    mass = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 0.0], [4.0, 0.0]])  # [C=4, F=2]
    idx, share = label_distribution(mass, 2)
    assert idx[0].tolist() == [3, 1] and share[0].tolist() == pytest.approx([0.5, 0.375])
    assert share[1].tolist() == [0.0, 0.0]


# -- the built site against the evaluation and comparison ------------------------------------------


def test_site_data_matches_the_evaluation_and_comparison(built):
    site, cfg = built["site"], built["cfg"]
    meta = read_js(site / "data" / "site.js")[0]
    comparison = json.loads((built["compare"] / "comparison.json").read_text())
    assert [m["name"] for m in meta["models"]] == ["tiny-RN", "tiny-ViT"]
    assert meta["k"] == 9 and meta["pair_chance"] == pytest.approx(9 / comparison["n_images"])
    assert meta["models"][0]["best_overlap_chance"] == comparison["topk_overlap"]["chance"]
    npz_o = np.load(built["compare"] / "topk_overlap.npz")
    for side, model in enumerate(built["inputs"]):
        table = pd.read_csv(model.eval_dir / "latents.csv")
        npz = np.load(model.eval_dir / "latents.npz")
        name, index = read_js(site / "data" / model.name / "index.js")
        c = index["columns"]
        assert name == model.name and c["latent"] == list(range(F))
        assert c["density"] == pytest.approx(table["lifetime_sparsity"].tolist(), rel=1e-3)
        assert c["alive"] == (~table["dead"]).astype(int).tolist() == (table["fire_count"] > 0).astype(int).tolist()
        assert c["fires"] == table["fire_count"].tolist()
        assert ("names" in c) == bool(meta["models"][side]["naming"])
        stats = np.load(model.eval_dir / "latent_stats.npz")
        features = {}
        for path in sorted((site / "data" / model.name).glob("f*.js")):
            name, start, chunk = read_js(path)
            assert len(chunk) <= cfg.features_per_file
            features.update({start + j: f for j, f in enumerate(chunk)})
        assert sorted(features) == list(range(F))
        for i, f in features.items():
            valid = npz["topk_indices"][i] >= 0
            assert f["rows"] == npz["topk_indices"][i][valid].tolist()
            assert f["acts"] == pytest.approx(npz["topk_values"][i][valid].tolist(), rel=1e-3)
            # the evaluation's histogram counts every image the latent fires on
            assert sum(f["hist"]) == table["fire_count"][i] and len(f["hist"]) == EVAL.histogram_bins
            # bands: counts add up to the images it fires on; every sample lies in its band, largest first
            assert f["band_counts"] == stats["band_counts"][i].tolist() and sum(f["band_counts"]) == table["fire_count"][i]
            for q, (rows, acts) in enumerate(zip(f["band_rows"], f["band_acts"])):
                assert len(rows) == min(f["band_counts"][q], stats["band_rows"].shape[2]) and acts == sorted(acts, reverse=True)
                lo, hi = f["band_edges"][q], f["band_edges"][q + 1]
                assert all(lo * (1 - 1e-3) <= a <= hi * (1 + 1e-3) for a in acts)
                assert set(rows) <= set(stats["band_rows"][i, q].tolist())
            if table["fire_count"][i]:
                assert f["labels"][0] == table["top_class"][i]
                assert f["shares"][0] == pytest.approx(table["top_class_share"][i], abs=1e-3)
        # partner and overlap: the argmax of the top-k overlap counts
        mine, theirs = (npz_o["topk_a"], npz_o["topk_b"]) if side == 0 else (npz_o["topk_b"], npz_o["topk_a"])
        for i in np.flatnonzero((mine >= 0).all(1))[:10]:
            counts = [len(set(mine[i]) & set(t)) if (t >= 0).all() else -1 for t in theirs]
            best = int(np.argmax(counts))
            if counts[best] > 0:
                assert c["partner"][i] == best and c["partner_overlap"][i] == pytest.approx(counts[best] / 9, rel=1e-3)


def test_one_definition_of_alive_dead_and_rare_everywhere(built):
    """Home page (site.js), table filter (index.js), site.json and the evaluation's metrics.json agree."""
    meta = read_js(built["site"] / "data" / "site.js")[0]
    record = json.loads((built["site"] / "site.json").read_text())
    for side, model in enumerate(built["inputs"]):
        metrics = json.loads((model.eval_dir / "metrics.json").read_text())
        table = pd.read_csv(model.eval_dir / "latents.csv")
        c = read_js(built["site"] / "data" / model.name / "index.js")[1]["columns"]
        alive = round(metrics["d_sae"] * (1 - metrics["dead_fraction"]))
        m = meta["models"][side]
        assert m["alive"] == record["models"][model.name]["alive"] == sum(c["alive"]) == alive
        assert m["dead"] == metrics["d_sae"] - alive == metrics["feature_density_histogram"]["never_fire"]
        assert m["rare"] == int(((table["fire_count"] > 0) & (table["fire_count"] < 9)).sum())
    assert meta["models"][0]["dead"] >= 1 and meta["models"][0]["rare"] >= 1  # the fixture's DEAD and RARE latents


def test_unpaired_list_agrees_with_the_comparisons_threshold(built):
    meta = read_js(built["site"] / "data" / "site.js")[0]
    comparison = json.loads((built["compare"] / "comparison.json").read_text())
    threshold = comparison["settings"]["overlap_threshold"]
    pairs = pd.read_csv(built["compare"] / "pairs.csv").query("method == 'overlap'")
    assert meta["overlap_threshold"] == threshold
    for side, model in enumerate(built["inputs"]):
        c = read_js(built["site"] / "data" / model.name / "index.js")[1]["columns"]
        page = meta["pages"][side]
        full = [i for i in range(F) if c["partner_overlap"][i] is not None]  # a full top-k: the comparison pairs these
        want = sorted((i for i in full if c["partner_overlap"][i] < threshold), key=lambda i: (-c["density"][i], i))
        assert page["unpaired"] == want and page["unpaired_total"] == len(want)
        mine = pairs["feature_a" if side == 0 else "feature_b"]
        assert page["paired_total"] == int((pairs["topk_overlap"] >= threshold).sum())
        assert set(page["best"]) == set(mine.tolist())


def test_pair_page_moves_features_with_the_threshold():
    """A feature with best overlap 0.6 is unpaired at threshold 0.7 and not at 0.5 (whatever its one-to-one match)."""
    from saesuite.report.explorer_data import Comparison

    table = pd.DataFrame({"lifetime_sparsity": [0.3, 0.2, 0.1]})
    ev = type("Ev", (), {"table": table})()
    for threshold, want in ((0.5, [2]), (0.7, [0, 2])):
        comp = Comparison({}, 9, 100, np.arange(100), (np.ones(3, bool), np.ones(3, bool)),
                          (np.array([1, 0, -1]), None), (np.array([0.6, 0.9, 0.0]), None),
                          (np.array([2, 0, -1]), None), (np.array([0.1, 0.9, np.nan]), None), threshold)
        page = pair_page(ev, comp, 0, rows=10)
        assert page["unpaired"] == want and page["best"] == [1, 0]


def test_concept_pages_list_each_models_features_about_the_class_and_their_pairing(built):
    meta = read_js(built["site"] / "data" / "site.js")[0]
    summary = read_js(built["site"] / "data" / "concepts.js")[0]
    threshold = meta["overlap_threshold"]
    tables = [pd.read_csv(m.eval_dir / "latents.csv") for m in built["inputs"]]
    pairs = pd.read_csv(built["compare"] / "pairs.csv").query("method == 'overlap'")
    partner = [dict(zip(pairs["feature_a"], pairs["feature_b"])), dict(zip(pairs["feature_b"], pairs["feature_a"]))]
    overlap = [dict(zip(pairs["feature_a"], pairs["topk_overlap"])), dict(zip(pairs["feature_b"], pairs["topk_overlap"]))]
    assert len(summary) == len(meta["classes"])
    for c in range(len(meta["classes"])):
        page = read_js(built["site"] / "data" / "concept" / f"{c}.js")[1]
        for side, t in enumerate(tables):
            about = t[(~t["dead"]) & (t["top_class"] == c)]
            listed = page["models"][side]["by_label"]
            assert page["models"][side]["n_by_label"] == len(about) == summary[c][side][0]
            assert {f["latent"] for f in listed} == set(about["latent"])  # F = 48: none cut off
            shares = [f["share"] for f in listed if t["fire_count"][f["latent"]] >= 9]
            assert shares == sorted(shares, reverse=True)
            paired = [i for i in about["latent"] if overlap[side].get(i, 0) >= threshold]
            same = [i for i in paired if tables[1 - side]["top_class"][partner[side][i]] == c]
            assert summary[c][side][1:] == [len(paired), len(same)]
            for f in listed:
                assert f["match"] == partner[side].get(f["latent"], -1) and f["paired"] == (f["latent"] in paired)


def test_thumbnails_are_one_small_file_per_image_shown(built):
    site, record = built["site"], built["record"]
    rows = set()
    for model in built["inputs"]:
        t = np.load(model.eval_dir / "latents.npz")["topk_indices"]
        bands = np.load(model.eval_dir / "latent_stats.npz")["band_rows"]
        rows |= set(t[t >= 0].tolist()) | set(bands[bands >= 0].tolist())
    files = sorted((site / "img").iterdir())
    assert {int(p.stem) for p in files} == rows and record["thumbnails"] == len(rows)
    assert len(rows) < 2 * F * (9 + 15)  # shared across features and models
    for p in files[:5]:
        with Image.open(p) as im:
            assert im.format == "WEBP" and max(im.size) <= built["cfg"].thumbnail_px
            want = np.asarray(built["dataset"][int(p.stem)][0].convert("RGB"), float)
            assert np.abs(np.asarray(im.convert("RGB"), float) - want).mean() < 20  # the right image
    assert record["total_bytes"] == sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and p.name != "site.json")


def test_site_is_self_contained_no_network_no_fetch(built):
    site = built["site"]
    html = (site / "index.html").read_text()
    app = (site / "app.js").read_text()
    for text in (html, app, (site / "style.css").read_text()):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert "fetch(" not in app and "XMLHttpRequest" not in app  # file:// forbids both; data come as scripts
    assert re.findall(r'<script src="([^"]+)"', html) == ["app.js", "data/site.js"]
    assert len(app) < 40_000


# -- in a real browser ------------------------------------------------------------------------------

INSTALL = ("headless Chromium is not installed: apt-get install -y chromium chromium-driver "
           "(and pip install -e '.[test]' for selenium)")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1366,768"]


def browser_paths() -> tuple[str, str]:
    """Debian's chromium and chromedriver; skips the test, saying how to install them, where either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip(INSTALL)
    return chromium, driver_path


def test_without_a_browser_the_browser_tests_skip_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install -y chromium chromium-driver"):
        browser_paths()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = browser_paths()
    webdriver = pytest.importorskip("selenium.webdriver", reason=INSTALL)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(20)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait_for(driver, css, count=1, timeout=10):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= count)
    return driver.find_elements(By.CSS_SELECTOR, css)


def errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver, site: Path, route: str):
    driver.get((site / "index.html").as_uri() + route)


def column(driver) -> list[int]:
    return [int(r.get_attribute("data-latent")) for r in wait_for(driver, "#latents tbody tr")]


def test_browser_index_loads_without_console_errors_and_sorting_changes_the_order(built, browser):
    from selenium.webdriver.common.by import By

    site = built["site"]
    open_page(browser, site, "#/m/tiny-RN")
    default = column(browser)
    c = read_js(site / "data" / "tiny-RN" / "index.js")[1]["columns"]
    alive = [i for i in range(F) if c["alive"][i]]
    assert default == sorted(alive, key=lambda i: (-c["density"][i], i))  # densest first
    assert len(browser.find_elements(By.CSS_SELECTOR, ".density-hist rect")) > 0
    browser.find_element(By.CSS_SELECTOR, 'th[data-key="label_entropy"]').click()
    by_entropy = column(browser)
    assert by_entropy != default
    assert by_entropy == sorted(alive, key=lambda i: (-c["label_entropy"][i], i))
    browser.find_element(By.CSS_SELECTOR, 'th[data-key="label_entropy"]').click()  # again: ascending
    assert column(browser) == sorted(alive, key=lambda i: (c["label_entropy"][i], i))
    browser.save_screenshot(str(ARTIFACTS / "index.png"))
    # search by class name (top class, and for RN the nearest names in CLIP's text space)
    name = c["names"][alive[0]].split("|")[0]
    box = browser.find_element(By.ID, "search")
    box.send_keys(name)
    classes = read_js(site / "data" / "site.js")[0]["classes"]
    want = {i for i in alive if name.lower() in classes[c["top_class"][i]].lower() or name.lower() in c["names"][i].lower()}
    assert set(column(browser)) == want
    assert errors(browser) == []


def feature(site: Path, model: str, i: int) -> dict:
    """Latent ``i``'s record in the site's feature file (16 latents a file in these tests)."""
    return read_js(site / "data" / model / f"f{i // 16:04d}.js")[2][i % 16]


def test_browser_feature_page_shows_k_loaded_images_and_the_partner_link_lands_on_the_partner(built, browser):
    from selenium.webdriver.common.by import By

    site = built["site"]
    c = read_js(site / "data" / "tiny-RN" / "index.js")[1]["columns"]
    i = next(i for i in range(F) if c["alive"][i] and c["partner"][i] >= 0)
    j = c["partner"][i]
    open_page(browser, site, f"#/f/tiny-RN/{i}")
    images = wait_for(browser, "#topk img", 9)
    assert len(images) == 9
    wait_for(browser, "#partner-grid img", 9)
    loaded = browser.execute_script(
        "return Array.from(document.querySelectorAll('#topk img, #partner-grid img'))"
        ".map(im => im.complete && im.naturalWidth > 0)")
    assert loaded == [True] * 18
    captions = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#topk figcaption")]
    assert all(len(t.split("\n")) == 2 for t in captions)  # class name and activation
    assert browser.find_element(By.ID, "partner-overlap").text == f"{c['partner_overlap'][i]:.3g}"
    assert len(browser.find_elements(By.CSS_SELECTOR, ".act-hist rect")) == EVAL.histogram_bins
    assert len(browser.find_elements(By.CSS_SELECTOR, "#labels tr")) >= 1
    # readable histogram: both axes labelled, y ticks up to the largest count, a count over each non-empty bar
    f = feature(site, "tiny-RN", i)
    labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".act-hist text.label")]
    assert labels == ["activation", "images"]
    counts = [int(t.text) for t in browser.find_elements(By.CSS_SELECTOR, ".act-hist text.count")]
    assert counts == [v for v in f["hist"] if v] and sum(counts) == c["fires"][i]
    assert str(max(f["hist"])) in [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".act-hist text")]
    # the partner panel beside the top-k grid, not below it
    top, partner = (browser.find_element(By.CSS_SELECTOR, sel).rect for sel in ("#topk", "#partner"))
    assert partner["x"] > top["x"] + top["width"] and partner["y"] < top["y"] + top["height"] / 2
    # activation bands: edges and counts as in latent_stats.npz, the samples' thumbnails loaded
    heads = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#bands .band-head")]
    assert len(heads) == len(f["band_counts"]) and [int(h.split("\n")[1].split()[0]) for h in heads] == f["band_counts"][::-1]
    band_imgs = browser.execute_script("return Array.from(document.querySelectorAll('#bands img')).map(im => im.complete && im.naturalWidth > 0)")
    assert band_imgs == [True] * sum(len(r) for r in f["band_rows"])
    browser.save_screenshot(str(ARTIFACTS / "feature.png"))
    browser.set_window_size(1280, 768)  # still side by side at 1280 px
    top, partner = (browser.find_element(By.CSS_SELECTOR, sel).rect for sel in ("#topk", "#partner"))
    assert partner["x"] > top["x"] + top["width"] and partner["y"] < top["y"] + top["height"] / 2
    browser.set_window_size(1366, 768)
    browser.find_element(By.ID, "partner-link").click()
    wait_for(browser, "#topk img", 9)
    assert browser.execute_script("return location.hash") == f"#/f/tiny-ViT/{j}"
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"tiny-ViT latent {j}")
    back = read_js(site / "data" / "tiny-ViT" / "index.js")[1]["columns"]["partner"][j]
    assert browser.find_element(By.ID, "partner-link").get_attribute("href").endswith(f"#/f/tiny-RN/{back}")
    assert errors(browser) == []


def test_browser_pairs_pages_list_best_pairs_and_unpaired_features(built, browser):
    site = built["site"]
    meta = read_js(site / "data" / "site.js")[0]
    for side in (0, 1):
        open_page(browser, site, f"#/pairs/{side}")
        wait_for(browser, "#best-pairs")
        best = browser.find_elements("css selector", "#best-pairs tr")
        lone = browser.find_elements("css selector", "#unpaired tr")
        assert len(best) == 1 + len(meta["pages"][side]["best"])
        assert len(lone) == 1 + len(meta["pages"][side]["unpaired"])
        strips = browser.execute_script(
            "return Array.from(document.querySelectorAll('#best-pairs tr')).slice(1)"
            ".map(tr => Array.from(tr.querySelectorAll('.minigrid img')).map(im => im.getAttribute('src')))")
        for i, srcs in zip(meta["pages"][side]["best"], strips):  # both features' first top images, side by side
            mine = read_js(site / "data" / meta["models"][side]["name"] / f"f{i // 16:04d}.js")[2][i % 16]["rows"][:5]
            assert srcs[:5] == [f"img/{r}.webp" for r in mine] and len(srcs) == 10
    assert errors(browser) == []


def test_browser_the_site_also_works_through_an_http_server(built, browser):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(built["site"]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = read_js(built["site"] / "data" / "tiny-ViT" / "index.js")[1]["columns"]
        i = next(i for i in range(F) if c["alive"][i])
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/index.html#/f/tiny-ViT/{i}")
        wait_for(browser, "#topk img", 9)
        loaded = browser.execute_script("return Array.from(document.querySelectorAll('#topk img'))"
                                        ".map(im => im.complete && im.naturalWidth > 0)")
        assert loaded == [True] * 9 and errors(browser) == []
    finally:
        server.shutdown()


def test_browser_home_page_counts_alive_dead_and_rare_as_the_evaluation_does(built, browser):
    from selenium.webdriver.common.by import By

    site = built["site"]
    open_page(browser, site, "#/")
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in wait_for(browser, "#models tr", 3)[1:]]
    for row, model in zip(rows, built["inputs"]):
        table = pd.read_csv(model.eval_dir / "latents.csv")
        assert row[:6] == [model.name, row[1], str(F), str(int((~table["dead"]).sum())),
                           str(int(((~table["dead"]) & (table["fire_count"] < 9)).sum())), str(int(table["dead"].sum()))]
    assert "fired on at least one" in browser.find_element(By.ID, "definitions").text
    browser.save_screenshot(str(ARTIFACTS / "home.png"))
    open_page(browser, site, "#/m/tiny-RN")  # the table's "alive only" filter: the same count
    assert len(column(browser)) == int(rows[0][3])
    assert errors(browser) == []


def test_browser_jump_box_and_keys_move_between_latents(built, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    site = built["site"]
    open_page(browser, site, "#/")
    wait_for(browser, "#jump-latent")
    Select(browser.find_element(By.ID, "jump-model")).select_by_visible_text("tiny-ViT")
    browser.find_element(By.ID, "jump-latent").send_keys("12", Keys.ENTER)
    heading = lambda: browser.execute_script("const h = document.querySelector('h1'); return h ? h.innerText : ''")  # noqa: E731
    WebDriverWait(browser, 10).until(lambda d: heading().startswith("tiny-ViT latent 12 "))
    body = browser.find_element(By.TAG_NAME, "body")
    for key, want in (("j", 13), (Keys.ARROW_RIGHT, 14), ("k", 13), (Keys.ARROW_LEFT, 12)):
        body.send_keys(key)
        WebDriverWait(browser, 10).until(lambda d: heading().startswith(f"tiny-ViT latent {want} "))
    assert "j" in browser.find_element(By.CSS_SELECTOR, "h1 .keys").text  # the keys are shown on the page
    body.send_keys("/")
    assert browser.switch_to.active_element.get_attribute("id") == "jump-latent"
    assert errors(browser) == []


def test_browser_dead_and_rare_latents_are_shown_as_what_they_are(built, browser):
    from selenium.webdriver.common.by import By

    site = built["site"]
    open_page(browser, site, f"#/f/tiny-RN/{DEAD}")
    state = wait_for(browser, "#state")[0].text
    assert "never fired" in state and not browser.find_elements(By.ID, "labels") and "other" not in browser.find_element(By.ID, "main").text
    open_page(browser, site, f"#/f/tiny-RN/{RARE}")
    wait_for(browser, "#topk img", RARE_IMAGES)
    assert browser.find_element(By.ID, "topk-title").text == f"Its {RARE_IMAGES} images"
    assert "Rare" in browser.find_element(By.ID, "state").text and "rare" in browser.find_element(By.ID, "partner").text
    assert errors(browser) == []


@pytest.mark.parametrize("route, words", [
    ("#/m/no-such-model", "no model “no-such-model”"), ("#/f/no-such-model/3", "no model"),
    (f"#/f/tiny-RN/{F}", f"its latents are 0 to {F - 1}"), ("#/f/tiny-RN/x", "has no latent “x”"),
    ("#/pairs/7", "no pairs page"), ("#/c/no-such-class", "no class"), ("#/nowhere", "no page"),
])
def test_browser_unknown_routes_show_a_message(built, browser, route, words):
    open_page(browser, built["site"], route)
    assert words in wait_for(browser, "#message")[0].text
    assert errors(browser) == []


def test_browser_concept_page_lists_both_models_features_about_a_class(built, browser):
    from selenium.webdriver.common.by import By

    site = built["site"]
    summary = read_js(site / "data" / "concepts.js")[0]
    c = max(range(len(summary)), key=lambda c: min(summary[c][0][0], summary[c][1][0]))  # a class both models have
    open_page(browser, site, "#/c")
    assert len(wait_for(browser, "#concepts tr", len(summary) + 1)) == len(summary) + 1
    open_page(browser, site, f"#/c/{c}")
    for side in (0, 1):
        page = read_js(site / "data" / "concept" / f"{c}.js")[1]["models"][side]
        rows = wait_for(browser, f"#by-label-{side} tr", 1 + len(page["by_label"]))
        assert [int(r.find_element(By.TAG_NAME, "a").text) for r in rows[1:]] == [f["latent"] for f in page["by_label"]]
    loaded = browser.execute_script("return Array.from(document.querySelectorAll('.concept img')).map(im => im.complete && im.naturalWidth > 0)")
    assert loaded and all(loaded)
    browser.save_screenshot(str(ARTIFACTS / "concept.png"))
    assert errors(browser) == []


def test_map_points_are_the_comparisons_feature_map(built):
    from saesuite.compare.feature_map import read_feature_map

    table, record = read_feature_map(built["compare"])
    points = read_js(built["site"] / "data" / "map.js")[0]
    meta = read_js(built["site"] / "data" / "site.js")[0]
    assert meta["map"]["quality"] == record["quality"]
    for side, model in enumerate(built["inputs"]):
        rows = table[(table["model"] == model.name) & table["alive"]]
        p = points["models"][side]
        assert p["latent"] == rows["latent"].tolist() and p["top_class"] == rows["top_class"].tolist()
        assert p["x"] == pytest.approx(rows["x"].tolist(), rel=1e-3, abs=1e-6)


def test_browser_map_points_open_their_feature_page(built, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    site = built["site"]
    open_page(browser, site, "#/map")
    canvas = wait_for(browser, "canvas#map")[0]
    assert "tiny-RN" in browser.find_element(By.ID, "map-legend").text
    # the most isolated point of model B, in canvas pixels (the page's own transform)
    side, latent, x, y = browser.execute_script("""
      const md = EXPLORER.mapData, c = document.getElementById('map'), at = mapTransform(md.models, c.width, c.height);
      const pts = md.models.flatMap((p, s) => p.latent.map((l, j) => [s, l, ...at(p.x[j], p.y[j])]));
      let best = null, far = -1;
      for (const p of pts.filter((p) => p[0] === 1)) {
        const near = Math.min(...pts.filter((q) => q !== p).map((q) => (q[2] - p[2]) ** 2 + (q[3] - p[3]) ** 2));
        if (near > far) { far = near; best = p; }
      }
      return best;""")
    browser.save_screenshot(str(ARTIFACTS / "map.png"))
    Select(browser.find_element(By.ID, "map-colour")).select_by_value("class")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map-legend .swatch")) >= 2
    browser.save_screenshot(str(ARTIFACTS / "map-by-class.png"))
    browser.execute_script("arguments[0].scrollIntoView()", canvas)
    ActionChains(browser).move_to_element_with_offset(canvas, x - canvas.size["width"] / 2, y - canvas.size["height"] / 2).click().perform()
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return location.hash") == f"#/f/tiny-ViT/{latent}")
    assert side == 1 and errors(browser) == []


def test_browser_both_models_features_are_named_in_words_with_their_method(built, browser):
    """Point 4: a feature of each model (the ViT's residual stream included) shows its names by the primary
    method, in names.json's order, and the method's description and score one click away."""
    from selenium.webdriver.common.by import By

    from saesuite.evaluate.naming import latent_names, read_names

    for model in built["inputs"]:
        names = read_names(model.eval_dir)
        c = read_js(built["site"] / "data" / model.name / "index.js")[1]["columns"]
        i = next(i for i in range(F) if c["alive"][i] and latent_names(names, i))
        want = [name for name, _ in latent_names(names, i)]
        open_page(browser, built["site"], f"#/f/{model.name}/{i}")
        primary = wait_for(browser, f'details.name[data-method="{names["primary"]}"] summary')[0]
        text = primary.text
        assert text.startswith("Name:")
        positions = [text.index(name) for name in want]
        assert positions == sorted(positions), (text, want)
        primary.click()
        method = browser.find_element(By.CSS_SELECTOR, f'details.name[data-method="{names["primary"]}"] p.method').text
        assert names["methods"][names["primary"]]["description"][:40] in method and "Over the model's latents" in method
        assert errors(browser) == []
