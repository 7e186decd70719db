"""Evaluation figures: the latent choice of the image grids, and every figure drawn from real evaluation files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from saesuite.data.datasets import load_dataset
from saesuite.evaluate.figures import FIGURES, GRIDS, choose_latents, draw_all
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.sae.model import save_sae
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


def captured_figure(monkeypatch):
    """Replace the figure writer with a catcher: the drawn matplotlib figure lands in the returned list."""
    from saesuite.evaluate import figures as eval_figures

    figures = []
    monkeypatch.setattr(eval_figures, "save", lambda fig, out: figures.append(fig))
    return figures


def test_fidelity_bars_draw_the_one_over_classes_line(monkeypatch):
    from saesuite.evaluate.figures import fidelity_bars

    figures = captured_figure(monkeypatch)
    fid = {"accuracy_clean": 0.6, "accuracy_spliced": 0.5, "accuracy_ablated": 0.2, "fraction_recovered": 0.75,
           "n_images": 100, "chance_accuracy": 0.25}
    fidelity_bars({"fidelity": fid, "classes": list("abcd"), "skipped": {"fidelity": None}}, "unused.png", "t")
    lines = [line for line in figures[0].axes[0].lines if tuple(line.get_ydata()) == (0.25, 0.25)]
    assert len(lines) == 1 and lines[0].get_linestyle() == ":"


def test_neuron_alignment_figure_draws_the_chance_level_of_each_reference(monkeypatch):
    from saesuite.evaluate.figures import neuron_alignment_histogram

    figures = captured_figure(monkeypatch)
    table = pd.DataFrame({p: np.linspace(0.1, 0.9, 20) for p in (
        "encoder_neuron_alignment", "decoder_neuron_alignment", "encoder_basis_alignment", "decoder_basis_alignment")})
    chance = {"directions": 4096, "seed": 0, "basis_mean": 0.21, "basis_fraction_above": 0.0, "neuron_mean": 0.37,
              "neuron_fraction_above": 0.01}
    metrics = {"hook": "attnpool", "skipped": {"neuron_alignment": None},
               "alignment": {"threshold": 0.5, "neurons": "visual.attnpool.c_proj", "chance": chance,
                             "neurons_description": "the 2048 inputs of visual.attnpool.c_proj"}}
    neuron_alignment_histogram(table, metrics, "unused.png", "t")
    ax = figures[0].axes[0]
    vertical = {line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":"}
    assert vertical == {0.37, 0.21}
    assert "inputs of visual.attnpool.c_proj" in ax.get_title()
    assert any("chance, attnpool.c_proj inputs" in t.get_text() for t in ax.texts)  # not called MLP neurons


def test_figures_of_a_cache_no_open_clip_model_made(tmp_path):
    from saesuite.cache.format import write_array_cache

    x, labels, _ = known_inputs()
    meta = {"model": "my-model", "pretrained": None, "hook": "mine", "dataset": "none", "split": "test", "classes": []}
    write_array_cache(tmp_path / "cache", x.astype(np.float32), meta, labels=labels)
    sae, cfg = split_sae(x.shape[1], model="my-model", hook="mine")
    save_sae(sae, tmp_path / "sae", cfg)
    evaluate_sae(tmp_path / "sae", tmp_path / "cache", tmp_path / "eval", EvalConfig(top_k=3, top_images=5))
    outputs = {name: tmp_path / "fig" / f"{name}.png" for name in FIGURES}
    draw_all(tmp_path / "eval", None, outputs, "user's model SAE", grid_latents=3, seed=0)
    for path in outputs.values():
        assert path.read_bytes()[:8] == PNG, path
