"""Where a training step's time goes, and what a change of the trainer buys: interleaved step times.

* ``steps``: ``Trainer.step`` (with ``Trainer.check`` after each step, where the code has one) at the
  paper's shape (d = 1024, F = 16,384, batch 1024) and a small one (d = 64, F = 1,024, batch 256),
  ReLU and TopK (k = 64), for each code version given (``--code DIR``: a folder holding a
  ``saesuite`` package, e.g. an older copy; default this checkout) and each thread count
  (``--threads``; at the small shape ``--small-threads``, default 1 and 2). Every (code, threads)
  runs in its own worker process; the workers take turns, one step each per round, starting at a
  different one each round, so load drifts hit all alike.
  Reported: the median step time of each, and per-round ratios against the first code version.
* ``init_stats``: the peak memory (tracemalloc: numpy's and Python's allocations) of
  ``saesuite.sae.train.init_stats`` on a 65,536 x 1024 float32 cache, per code version.
* ``profile``: the operators that take a step's time (torch.profiler, self CPU time) for the last
  code version, small shape (the per-step overhead) and paper TopK.

Writes ``results/bench/step_parts.json``.

    python benchmarks/bench_step_parts.py                                    # this checkout, 2 threads
    python benchmarks/bench_step_parts.py --code /tmp/old . --rounds 15      # an older copy against this one
    python benchmarks/bench_step_parts.py --small-threads 1 2 --shapes small # the thread-count rule
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPES = {"paper": (1024, 16384, 1024), "small": (64, 1024, 256)}  # d, F, batch
K = 64
HERE = Path(__file__).resolve()


def make_trainer(d: int, F: int, batch: int, arch: str):
    """A Trainer with the whole recipe on (AuxK or resampling clocks, clipping, schedules, the guard)."""
    import torch

    from saesuite.sae.config import TrainConfig
    from saesuite.sae.trainer import Trainer

    cfg = TrainConfig(architecture=arch, k=K if arch == "topk" else None, expansion=F // d, batch_size=batch,
                      samples=batch * 10**6, dead_window_samples=batch * 3, resample_every_samples=batch * 10**9,
                      lr_warmup_samples=batch, l1_warmup_samples=batch)
    return Trainer(cfg, Path("unused"), d, np.zeros(d), torch.device("cpu"))


def batch_of(d: int, batch: int):
    import torch

    x = torch.randn(batch, d, generator=torch.Generator().manual_seed(1))
    return x * (d**0.5 / x.norm(dim=1, keepdim=True))


def worker(code: str, threads: int, shape: str, arch: str) -> None:
    """Serve steps on stdin ("step" -> seconds on stdout) for one (code, threads, shape, architecture)."""
    sys.path.insert(0, code)
    import torch

    torch.set_num_threads(threads)
    d, F, batch = SHAPES[shape]
    trainer, x = make_trainer(d, F, batch, arch), batch_of(d, batch)
    check = getattr(trainer, "check", lambda: None)
    step = 0
    import saesuite

    print("ready", saesuite.__file__, flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        start = time.perf_counter()
        trainer.step(x, step)
        check()
        print(time.perf_counter() - start, flush=True)
        step += 1


def interleaved_steps(codes: list[str], threads: list[int], shape: str, arch: str, rounds: int, warmup: int) -> dict:
    """Round-robin steps of one worker per (code, threads); medians and per-round ratios to the first."""
    names = [f"{Path(c).resolve().name or c}@{t}" for c in codes for t in threads]
    procs = [subprocess.Popen([sys.executable, str(HERE), "--worker", c, str(t), shape, arch], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for c in codes for t in threads]
    for p, code in zip(procs, [c for c in codes for _ in threads]):
        word, package = p.stdout.readline().split()
        assert word == "ready" and Path(package).is_relative_to(Path(code).resolve()), (package, code)
    times: list[list[float]] = [[] for _ in procs]
    for r in range(warmup + rounds):
        for i in [(r + j) % len(procs) for j in range(len(procs))]:
            procs[i].stdin.write("step\n")
            procs[i].stdin.flush()
            t = float(procs[i].stdout.readline())
            if r >= warmup:
                times[i].append(t)
    for p in procs:
        p.stdin.close()
        p.wait()
    first = np.array(times[0])
    return {"shape": shape, "architecture": arch, "rounds": rounds,
            "seconds_per_step": {n: float(np.median(t)) for n, t in zip(names, times)},
            "ratio_to_first": {n: float(np.median(np.array(t) / first)) for n, t in zip(names, times)},
            "seconds_all": dict(zip(names, times))}


def stats_memory(code: str, cache_dir: str) -> dict:
    """Peak traced memory and wall time of init_stats (geometric median, 65,536 rows) in a fresh process."""
    script = (f"import sys, time, tracemalloc, json; sys.path.insert(0, {code!r})\n"
              "from saesuite.cache.reader import ActivationCache\nfrom saesuite.sae.config import TrainConfig\n"
              "from saesuite.sae.train import init_stats\n"
              f"cache = ActivationCache.open({cache_dir!r}); tracemalloc.start(); t = time.perf_counter()\n"
              "init_stats(cache, TrainConfig(b_dec_init_samples=65536))\n"
              "print(json.dumps({'peak_mib': tracemalloc.get_traced_memory()[1] / 2**20, 'seconds': time.perf_counter() - t}))")
    return json.loads(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout)


def profile(code: str, threads: int, shape: str, arch: str, steps: int = 5, top: int = 12) -> list[dict]:
    """The operators with the most self CPU time over ``steps`` steps (after two warm-up steps)."""
    script = (f"import sys, json; sys.path.insert(0, {code!r}); sys.path.insert(0, {str(HERE.parent)!r})\n"
              "import torch; from bench_step_parts import *\n"
              f"torch.set_num_threads({threads}); d, F, b = SHAPES[{shape!r}]\n"
              f"t, x = make_trainer(d, F, b, {arch!r}), batch_of(d, b); check = getattr(t, 'check', lambda: None)\n"
              "for s in range(2): t.step(x, s); check()\n"
              "with torch.profiler.profile() as p:\n"
              f"    for s in range(2, {2 + steps}): t.step(x, s); check()\n"
              f"rows = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)[:{top}]\n"
              f"print(json.dumps([{{'op': e.key, 'self_ms_per_step': e.self_cpu_time_total / 1e3 / {steps}, "
              f"'calls_per_step': e.count / {steps}}} for e in rows]))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--code", nargs="+", default=[str(HERE.parents[1])], help="folders holding a saesuite package")
    parser.add_argument("--threads", nargs="+", type=int, default=[2], help="torch threads at the paper shape")
    parser.add_argument("--small-threads", nargs="+", type=int, default=[1, 2],
                        help="torch threads at the small shape (the one-thread rule for small SAEs)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--archs", nargs="+", default=["relu", "topk"], choices=["relu", "topk"])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=["steps", "init_stats", "profile"])
    parser.add_argument("--out", default="results/bench/step_parts.json")
    args = parser.parse_args()
    report: dict = {"codes": args.code, "threads": args.threads, "cpu_count": os.cpu_count(),
                    "load_average_at_start": os.getloadavg()}
    if "steps" not in args.skip:
        report["steps"] = []
        for shape in args.shapes:
            for arch in args.archs:
                threads = args.small_threads if shape == "small" else args.threads
                r = interleaved_steps(args.code, threads, shape, arch, args.rounds, args.warmup)
                print(shape, arch, {n: f"{1e3 * t:.1f} ms (x{r['ratio_to_first'][n]:.2f})"
                                    for n, t in r["seconds_per_step"].items()}, flush=True)
                report["steps"].append(r)
    if "init_stats" not in args.skip:
        sys.path.insert(0, args.code[-1])
        from saesuite.cache.planted import write_array_cache

        with tempfile.TemporaryDirectory() as tmp:
            rows = np.random.default_rng(0).normal(size=(65536, 1024)).astype(np.float32)
            cache = str(write_array_cache(Path(tmp) / "c", rows, n_shards=4))
            del rows
            report["init_stats"] = {c: stats_memory(c, cache) for c in args.code}
        print("init_stats", report["init_stats"], flush=True)
    if "profile" not in args.skip:
        report["profile"] = {f"{shape} {arch}": profile(args.code[-1], 1 if shape == "small" else args.threads[-1], shape, arch)
                             for shape, arch in (("small", "relu"), ("small", "topk"), ("paper", "topk"))}
    report["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        main()
