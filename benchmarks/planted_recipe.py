"""Which L1 coefficients let the baseline's recipe (``fry2024``) recover a planted dictionary?

The planted data of config/planted.yaml (d = 64, 256 true unit features, exactly 4 active per
sample with coefficients in [0.5, 1.5], power-law frequencies) is written at two overall scales
(its own mean norm, and 10 x that), and ReLU SAEs with expansion 8 are trained with the fry2024
recipe at a grid of lambda, all in one pass per scale. Each SAE's recovery (the fraction of true
features whose best decoder row has cosine > 0.9) and L0 on fresh samples are reported.

Fry's objective divides each sample's squared error by its own norm (not squared), and its L1 term
grows with the code, which grows with the norm: both terms scale by the same factor c when the data
do, so the lambda that recovers the dictionary should not depend on the data's norm (the two
scales check it). It does depend on d: the reconstruction is a mean over d dimensions and the L1 a
sum over latents, so at a fixed relative error the balance moves by d. This run is at d = 64; the
ViT-L/14 residual stream has d = 1024.

    python benchmarks/planted_recipe.py                       # 512 steps, both scales (~6 min on 2 cores)
    python benchmarks/planted_recipe.py --steps 2560 --scales 1 --lambdas 1e-3 2e-3 3e-3 5e-3
                                                              # Fry's run length (2,560 steps)
Writes results/bench/planted_recipe_<steps>_lr<lr>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from saesuite.cache.planted import PlantedSpec, planted_activations, planted_dictionary, recovery, write_array_cache
from saesuite.sae.config import TrainConfig
from saesuite.sae.train import train_saes

REPO = Path(__file__).resolve().parents[1]
SPEC = PlantedSpec(d=64, n_true=256, k=4, alpha=0.5, coef_low=0.5, coef_high=1.5, seed=0)
LAMBDAS = (1e-5, 8e-5, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SCALES = (1.0, 10.0)
BATCH = 1024


def run_settings(steps: int, lr: float) -> dict:
    """Fry's run: 2,560 steps, 500 of lr warm-up (~20%), dead after 64 silent steps (2.5%); the same fractions."""
    return {"recipe": "fry2024", "expansion": 8, "lr": lr, "batch_size": BATCH, "samples": BATCH * steps,
            "lr_warmup_samples": BATCH * steps * 500 // 2560, "dead_window_samples": BATCH * max(1, steps * 64 // 2560),
            "b_dec_init_samples": 8192, "device": "cpu", "log_every": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--lambdas", type=float, nargs="+", default=LAMBDAS)
    parser.add_argument("--scales", type=float, nargs="+", default=SCALES)
    parser.add_argument("--lr", type=float, default=4e-4, help="Fry's 4e-4 by default")
    args = parser.parse_args()
    run = run_settings(args.steps, args.lr)
    x_train, _ = planted_activations(SPEC, 131_072, stream=0)
    x_eval, _ = planted_activations(SPEC, 8192, stream=1)
    true = planted_dictionary(SPEC)
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            cache = write_array_cache(Path(tmp) / f"c{scale}", x_train * scale, n_shards=2)
            runs = [(Path(tmp) / f"s{scale}" / f"{lam:g}", TrainConfig.from_dict({**run, "l1_coefficient": lam}))
                    for lam in args.lambdas]
            train_saes(cache, runs)
            for (out, cfg) in runs:
                w = load_file(str(out / "sae_weights.safetensors"))
                f = np.maximum((x_eval * scale - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0)  # the ReLU code
                x_hat = f @ w["W_dec"] + w["b_dec"]
                ev = 1 - ((x_eval * scale - x_hat) ** 2).sum() / ((x_eval * scale - x_eval.mean(0) * scale) ** 2).sum()
                rec = recovery(true, w["W_dec"])
                rows.append({"scale": scale, "mean_norm": float(np.linalg.norm(x_eval * scale, axis=1).mean()),
                             "l1_coefficient": cfg.l1_coefficient, "l0": float((f > 0).sum(1).mean()),
                             "explained_variance": float(ev), "mean_best_cosine": rec["mean_best_cosine"],
                             "fraction_above_0.9": rec["fraction_above_0.9"]})
                r = rows[-1]
                print(f"norm {r['mean_norm']:7.3f}  lambda {r['l1_coefficient']:<7g} L0 {r['l0']:7.1f}  "
                      f"EV {r['explained_variance']:.3f}  recovered {r['fraction_above_0.9']:.1%}", flush=True)
    good = {s: [r["l1_coefficient"] for r in rows if r["scale"] == s and r["fraction_above_0.9"] >= 0.9] for s in args.scales}
    result = {"spec": SPEC.__dict__, "run": run, "steps": args.steps, "rows": rows, "seconds": round(time.perf_counter() - start),
              "lambdas_recovering_90pct": {str(s): v for s, v in good.items()}}
    out = REPO / "results" / "bench" / f"planted_recipe_{args.steps}_lr{args.lr:g}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for s, v in good.items():
        print(f"scale {s:g}: lambda with >= 90% of features above cos 0.9: {v or 'none'}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
