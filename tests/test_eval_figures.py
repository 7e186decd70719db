"""Evaluation figures: the latent choice of the image grids, and every figure drawn from real evaluation files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from saesuite.data import load_dataset
from saesuite.eval_figures import FIGURES, GRIDS, choose_latents, draw_all
from saesuite.evaluate import EvalConfig, evaluate_sae
from saesuite.sae import save_sae
from test_eval_known import known_inputs, split_sae, write_cache

PNG = b"\x89PNG\r\n\x1a\n"


def test_choose_latents_picks_frequent_low_entropy_and_random_alive():
    table = pd.DataFrame(
        {
            "latent": range(6),
            "fire_count": [50, 10, 80, 30, 0, 60],
            "label_entropy": [1.0, 0.1, 2.0, 0.5, np.nan, 0.3],
            "topk_rows": ["1;2", "3;4", "5;6", "7;8", "-1;-1", "9;-1"],  # latents 4 and 5 lack a full top-k
        }
    )
    chosen = choose_latents(table, 2, seed=0)
    assert chosen["frequent"] == [2, 0]
    assert chosen["low_entropy"] == [1, 3]
    assert len(chosen["random"]) == 2 and set(chosen["random"]) <= {0, 1, 2, 3}
    assert chosen == choose_latents(table, 2, seed=0)  # seeded


def test_every_evaluation_figure_is_drawn(fixture_spec, tmp_path):
    x, labels, _ = known_inputs()
    write_cache(tmp_path / "cache", x, labels)
    sae, cfg = split_sae(x.shape[1])
    save_sae(sae, tmp_path / "sae", cfg)
    evaluate_sae(tmp_path / "sae", tmp_path / "cache", tmp_path / "eval", EvalConfig(top_k=3, top_images=5))
    images = load_dataset(fixture_spec, "test")
    outputs = {name: tmp_path / "fig" / f"{name}.png" for name in FIGURES + GRIDS}
    draw_all(tmp_path / "eval", images, outputs, "known SAE", grid_latents=3, seed=0)
    for path in outputs.values():
        assert path.read_bytes()[:8] == PNG, path
