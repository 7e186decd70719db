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
from saesuite.report.explorer import ExplorerConfig, ModelInputs, best_partners, build_explorer, label_distribution
from saesuite.compare.features import CompareSettings
from saesuite.compare.overlap import overlap_counts
from saesuite.sae.model import SAE, save_sae

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("EXPLORER_ARTIFACTS", REPO / "results" / "test-artifacts" / "explorer"))
MODELS = (("tiny-RN", "attnpool"), ("tiny-ViT", "resid_cls:-2"))
F = 48  # latents per SAE
EVAL = EvalConfig(chunk_rows=64)


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
        assert c["alive"] == (npz["topk_indices"][:, 0] >= 0).astype(int).tolist()
        assert ("text_names" in c) == (model.name == "tiny-RN")  # attnpool lives in CLIP's text space
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


def test_thumbnails_are_one_small_file_per_distinct_top_image(built):
    site, record = built["site"], built["record"]
    rows = set()
    for model in built["inputs"]:
        t = np.load(model.eval_dir / "latents.npz")["topk_indices"]
        rows |= set(t[t >= 0].tolist())
    files = sorted((site / "img").iterdir())
    assert {int(p.stem) for p in files} == rows and record["thumbnails"] == len(rows)
    assert len(rows) < 2 * F * 9  # shared across features and models
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
    assert len(app) < 20_000


def project_size(record: dict, latents: int, images: int, thumbnail_bytes: float) -> dict:
    """Projected site size for ``latents`` per SAE over an eval split of ``images`` images (README's paper-run figure).

    Data files scale with the number of latents (bytes per latent measured on ``record``);
    thumbnails are at most one per image of the split (the union of 2 x latents x k top-k rows
    cannot exceed it), at ``thumbnail_bytes`` each.
    """
    per_latent = sum((m["index_bytes"] + m["feature_bytes"]) / m["latents"] for m in record["models"].values())
    data = per_latent * latents
    thumbs = min(images, 2 * latents * record["k"]) * thumbnail_bytes
    return {"data_bytes": data, "thumbnail_bytes_max": thumbs, "total_bytes_max": data + thumbs + record["asset_bytes"]}


def test_size_projection_scales_data_with_latents_and_caps_thumbnails_at_the_split():
    record = {"k": 9, "asset_bytes": 10_000, "models": {"a": {"latents": 100, "index_bytes": 10_000, "feature_bytes": 30_000},
                                                         "b": {"latents": 100, "index_bytes": 10_000, "feature_bytes": 30_000}}}
    p = project_size(record, latents=16384, images=50_000, thumbnail_bytes=2_000)
    assert p["data_bytes"] == pytest.approx(800 * 16384)
    assert p["thumbnail_bytes_max"] == 50_000 * 2_000
    assert p["total_bytes_max"] == pytest.approx(800 * 16384 + 1e8 + 1e4)


# -- in a real browser ------------------------------------------------------------------------------

INSTALL = ("headless Chromium is not installed: apt-get install -y chromium chromium-driver "
           "(and pip install -e '.[test]' for selenium)")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000"]


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
    name = c["text_names"][alive[0]].split("|")[0]
    box = browser.find_element(By.ID, "search")
    box.send_keys(name)
    classes = read_js(site / "data" / "site.js")[0]["classes"]
    want = {i for i in alive if name.lower() in classes[c["top_class"][i]].lower() or name.lower() in c["text_names"][i].lower()}
    assert set(column(browser)) == want
    assert errors(browser) == []


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
    assert len(browser.find_elements(By.CSS_SELECTOR, "#labels tr")) >= 2
    browser.save_screenshot(str(ARTIFACTS / "feature.png"))
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
