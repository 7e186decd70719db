"""Training speed: saesuite's full training step against a minimal reference loop, same run.

For each shape (the paper's d=1024, F=16384, batch 1024, and a small one) and each
architecture, the reference is the plainest PyTorch that does the same maths and
optimiser (ReLU: MSE + L1 with Adam; TopK: dense top-k code, MSE, Adam). saesuite's
step runs with the whole recipe on: decoder-norm-weighted L1, gradient projection,
unit-norm decoder, gradient clipping, lr and L1 schedules, dead-latent clocks (AuxK for
TopK once latents die). Steps alternate between the two so drift in machine load hits
both alike. Writes ``results/bench/train.json``.

    python benchmarks/bench_train.py                 # CPU: paper + small shapes
    python benchmarks/bench_train.py --device cuda   # on a GPU: bf16 autocast, TFLOP/s
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from saesuite.sae.train import Trainer, TrainConfig

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM


def reference_step_fn(d: int, F: int, architecture: str, k: int, device: torch.device, dtype: torch.dtype | None):
    """A minimal loop: parameters, forward, loss, backward, Adam."""
    g = torch.Generator().manual_seed(0)
    W_enc = (torch.randn(d, F, generator=g) / d**0.5).to(device).requires_grad_()
    W_dec = (torch.randn(F, d, generator=g) / d**0.5).to(device).requires_grad_()
    b_enc = torch.zeros(F, device=device, requires_grad=True)
    b_dec = torch.zeros(d, device=device, requires_grad=True)
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=4e-4)

    def step(x: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            pre = (x - b_dec) @ W_enc + b_enc
            if architecture == "relu":
                f = torch.relu(pre)
            else:
                values, indices = pre.topk(k, dim=-1)
                f = torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
            x_hat = f @ W_dec + b_dec
            loss = (x_hat.float() - x).pow(2).mean()
            if architecture == "relu":
                loss = loss + 8e-5 * f.float().sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def saesuite_step_fn(d: int, F: int, architecture: str, k: int, device: torch.device, dtype: str, batch: int):
    cfg = TrainConfig(architecture=architecture, k=k if architecture == "topk" else None, expansion=F // d,
                      batch_size=batch, samples=batch * 10_000, device=str(device), dtype=dtype,
                      dead_window_samples=batch * 3, resample_every_samples=batch * 10**9, log_every=10**9)
    trainer = Trainer(cfg, Path("unused"), d, np.zeros(d), device)
    counter = iter(range(10**9))
    return lambda x: trainer.step(x, next(counter))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(d: int, F: int, batch: int, architecture: str, k: int, device: torch.device, dtype: str,
            steps: int, warmup: int) -> dict:
    x = torch.randn(batch, d, generator=torch.Generator().manual_seed(1)).to(device)
    autocast = torch.bfloat16 if dtype == "bfloat16" else None
    fns = {"reference": reference_step_fn(d, F, architecture, k, device, autocast),
           "saesuite": saesuite_step_fn(d, F, architecture, k, device, dtype, batch)}
    times = {name: [] for name in fns}
    for i in range(warmup + steps):
        for name, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn(x)
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    out = {"d": d, "F": F, "batch": batch, "architecture": architecture, "k": k if architecture == "topk" else None,
           "steps_timed": steps}
    flops = 6 * batch * d * F  # forward 2 matmuls + backward 4, the dense-ReLU count, for both loops
    for name, ts in times.items():
        median = float(np.median(ts))
        out[f"{name}_seconds_per_step"] = median
        out[f"{name}_samples_per_s"] = batch / median
        out[f"{name}_tflops"] = flops / median / 1e12
    out["ratio"] = out["reference_seconds_per_step"] / out["saesuite_seconds_per_step"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="results/bench/train.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    shapes = [(1024, 16384, 1024), (64, 1024, 256)]
    results = []
    for d, F, batch in shapes:
        for architecture in ("relu", "topk"):
            r = measure(d, F, batch, architecture, 32, device, dtype, args.steps, warmup=2)
            print(f"d={d} F={F} batch={batch} {architecture}: reference {r['reference_samples_per_s']:.0f} "
                  f"samples/s, saesuite {r['saesuite_samples_per_s']:.0f} samples/s, ratio {r['ratio']:.2f}")
            results.append(r)
    report = {"device": str(device), "dtype": dtype, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.machine(), "results": results}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for key, v in PEAK_BF16_TFLOPS.items() if key in name), None)
        report.update(gpu=name, peak_bf16_tflops=peak)
        for r in results:
            r["saesuite_fraction_of_peak"] = r["saesuite_tflops"] / peak if peak else None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
