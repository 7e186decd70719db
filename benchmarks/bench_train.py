"""Training speed: saesuite's full training step against its peers and a plain sgemm, same run.

For each shape (the paper's d=1024, F=16384, batch 1024, and a small d=64, F=1024) and each
architecture (ReLU + L1, TopK with k=64), five contenders take turns, one step each per round:

* ``saesuite``: ``Trainer.step`` with the whole recipe on (decoder-norm-weighted L1, gradient
  projection, unit-norm decoder, clipping, lr and L1 schedules, dead-latent clocks, AuxK once
  latents die, the divergence guard);
* ``sae_lens``: SAELens' ``StandardTrainingSAE`` / ``TopKTrainingSAE`` stepped by its own
  ``SAETrainer.step`` (its forward, losses, fired-latent counters, clipping, Adam, schedulers);
* ``overcomplete``: overcomplete's ``SAE`` / ``TopKSAE`` stepped by its own ``train_sae`` over a
  one-batch loader (ReLU: its ``mse_l1``; TopK: plain MSE, because its AuxK loss sorts half of
  all latents every step and would only make it slower);
* ``plain``: the plainest PyTorch with the same maths (MSE + L1 or dense top-k, Adam);
* ``sgemm``: the five dense matmuls of a ReLU step (encode, decode, the code's gradient and the
  two weight gradients), nothing else: the practical peak of this machine for this work.

Rounds start at a different contender each time, so drift in machine load and cache warmth hits
all alike; every figure is a median over the timed rounds, and ``speedup_vs`` is the median of
the per-round ratios ``t_peer / t_saesuite``. ``gflops`` counts the same dense work for every
contender, ``10 * batch * d * F`` (those five matmuls), so ``fraction_of_sgemm`` is simply
``t_sgemm / t``; a TopK step that exploits sparsity may exceed 1. Writes
``results/bench/train_peers.json``.

    python benchmarks/bench_train.py                            # CPU, 2 threads, ~3 min
    python benchmarks/bench_train.py --rounds 15                # the README's run
    python benchmarks/bench_train.py --device cuda              # bf16 autocast for every contender
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from saesuite.sae.config import TrainConfig
from saesuite.sae.trainer import Trainer

SHAPES = {"paper": (1024, 16384, 1024), "small": (64, 1024, 256)}  # d, F, batch
LR, L1 = 4e-4, 8e-5
DEAD_WINDOW_STEPS = 3  # short, so the dead-latent machinery (AuxK) runs within the timed steps
Step = Callable[[torch.Tensor], None]


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def saesuite_step(d: int, F: int, batch: int, arch: str, k: int, device: torch.device, bf16: bool) -> Step:
    cfg = TrainConfig(architecture=arch, k=k if arch == "topk" else None, expansion=F // d, batch_size=batch,
                      samples=batch * 10**6, device=str(device), dtype="bfloat16" if bf16 else "float32",
                      dead_window_samples=batch * DEAD_WINDOW_STEPS, resample_every_samples=batch * 10**9,
                      log_every=10**9, lr=LR, l1_coefficient=L1)
    trainer = Trainer(cfg, Path("unused"), d, np.zeros(d), device)
    counter = iter(range(10**9))
    return lambda x: trainer.step(x, next(counter))


def sae_lens_step(d: int, F: int, batch: int, arch: str, k: int, device: torch.device, bf16: bool) -> Step:
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(0)
    if arch == "relu":
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d, d_sae=F, device=str(device), l1_coefficient=L1))
    else:
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=F, device=str(device), k=k))
    cfg = SAETrainerConfig(total_training_samples=batch * 10**6, train_batch_size_samples=batch, lr=LR, lr_end=LR / 10,
                           device=str(device), autocast=bf16, dead_feature_window=DEAD_WINDOW_STEPS)
    trainer = SAETrainer(cfg, sae, data_provider=iter(()))

    def step(x: torch.Tensor) -> None:  # the body of SAETrainer.fit's loop, without its logging
        trainer.maybe_reset_sparsity()
        trainer.step(x)
        trainer.n_training_steps += 1

    return step


def import_overcomplete():
    """``overcomplete.sae``; its package import builds colormaps with ``matplotlib.cm.get_cmap``, which
    matplotlib 3.9 removed, so that name is put back (as ``matplotlib.colormaps[name]``) first."""
    import matplotlib
    import matplotlib.cm

    if not hasattr(matplotlib.cm, "get_cmap"):
        matplotlib.cm.get_cmap = lambda name=None, lut=None: matplotlib.colormaps[name]
    import overcomplete.sae

    return overcomplete.sae


def overcomplete_step(d: int, F: int, batch: int, arch: str, k: int, device: torch.device, bf16: bool) -> Step:
    oc = import_overcomplete()
    SAE, TopKSAE, mse_l1, train_sae = oc.SAE, oc.TopKSAE, oc.mse_l1, oc.train_sae

    torch.manual_seed(0)
    model = SAE(d, F, device=str(device)) if arch == "relu" else TopKSAE(d, F, top_k=k, device=str(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)

    def mse(x, x_hat, *_):
        return (x - x_hat).square().mean()

    criterion = (lambda *a: mse_l1(*a, penalty=L1)) if arch == "relu" else mse

    def step(x: torch.Tensor) -> None:
        with autocast(device, bf16):
            train_sae(model, [x], criterion, optimizer, nb_epochs=1, clip_grad=1.0, monitoring=0, device=str(device))

    return step


def plain_step(d: int, F: int, batch: int, arch: str, k: int, device: torch.device, bf16: bool) -> Step:
    """A minimal loop: parameters, forward, loss, backward, Adam."""
    g = torch.Generator().manual_seed(0)
    W_enc = (torch.randn(d, F, generator=g) / d**0.5).to(device).requires_grad_()
    W_dec = (torch.randn(F, d, generator=g) / d**0.5).to(device).requires_grad_()
    b_enc = torch.zeros(F, device=device, requires_grad=True)
    b_dec = torch.zeros(d, device=device, requires_grad=True)
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=LR)

    def step(x: torch.Tensor) -> None:
        with autocast(device, bf16):
            pre = (x - b_dec) @ W_enc + b_enc
            if arch == "relu":
                f = torch.relu(pre)
            else:
                values, indices = pre.topk(k, dim=-1)
                f = torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
            loss = ((f @ W_dec + b_dec).float() - x).pow(2).mean()
            if arch == "relu":
                loss = loss + L1 * f.float().sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def sgemm_step(d: int, F: int, batch: int, arch: str, k: int, device: torch.device, bf16: bool) -> Step:
    """The five dense matmuls of a ReLU step into preallocated outputs: 10 * batch * d * F FLOPs."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    x, W_enc, W_dec, f, grad_x = rand(batch, d), rand(d, F), rand(F, d), rand(batch, F), rand(batch, d)
    pre, x_hat, grad_f, grad_W_dec, grad_W_enc = rand(batch, F), rand(batch, d), rand(batch, F), rand(F, d), rand(d, F)

    def step(_: torch.Tensor) -> None:
        torch.mm(x, W_enc, out=pre)
        torch.mm(f, W_dec, out=x_hat)
        torch.mm(grad_x, W_dec.T, out=grad_f)
        torch.mm(f.T, grad_x, out=grad_W_dec)
        torch.mm(x.T, grad_f, out=grad_W_enc)

    return step


CONTENDERS = {"saesuite": saesuite_step, "sae_lens": sae_lens_step, "overcomplete": overcomplete_step,
              "plain": plain_step, "sgemm": sgemm_step}
PEERS = ("sae_lens", "overcomplete", "plain")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(shape: str, arch: str, k: int, device: torch.device, bf16: bool, rounds: int, warmup: int) -> dict:
    """Round-robin ``warmup + rounds`` steps of every contender on one batch; medians of the timed rounds."""
    d, F, batch = SHAPES[shape]
    x = torch.randn(batch, d, generator=torch.Generator().manual_seed(1)).to(device)
    x = x * (d**0.5 / x.norm(dim=1, keepdim=True))  # mean norm sqrt(d), as saesuite scales its inputs
    steps = {name: make(d, F, batch, arch, k, device, bf16) for name, make in CONTENDERS.items()}
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            sync(device)
            start = time.perf_counter()
            steps[name](x)
            sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    flops = 10 * batch * d * F
    out = {"shape": shape, "d": d, "F": F, "batch": batch, "architecture": arch, "k": k if arch == "topk" else None,
           "rounds": rounds, "dense_flops_per_step": flops, "contenders": {}}
    for name, ts in times.items():
        median = float(np.median(ts))
        out["contenders"][name] = {"seconds_per_step": median, "samples_per_s": batch / median,
                                   "gflops": flops / median / 1e9, "seconds_min": min(ts), "seconds_all": ts}
    sgemm = out["contenders"]["sgemm"]["seconds_per_step"]
    for c in out["contenders"].values():
        c["fraction_of_sgemm"] = sgemm / c["seconds_per_step"]
    ours = np.array(times["saesuite"])
    out["speedup_vs"] = {peer: float(np.median(np.array(times[peer]) / ours)) for peer in PEERS}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (one step of every contender each)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--out", default="results/bench/train_peers.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    results = []
    for shape in args.shapes:
        for arch in ("relu", "topk"):
            r = measure(shape, arch, args.k, device, bf16, args.rounds, args.warmup)
            c = r["contenders"]
            print(f"{shape} {arch}: " + ", ".join(f"{n} {v['samples_per_s']:.0f}/s ({v['fraction_of_sgemm']:.0%})"
                                                  for n, v in c.items())
                  + " | saesuite x " + ", ".join(f"{p} {s:.2f}" for p, s in r["speedup_vs"].items()), flush=True)
            results.append(r)
    report = {"device": str(device), "dtype": "bfloat16 autocast" if bf16 else "float32", "threads": torch.get_num_threads(),
              "machine": platform.machine(), "processor": platform.processor(),
              "versions": {p: version(p) for p in ("torch", "sae-lens", "overcomplete")}, "results": results}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
