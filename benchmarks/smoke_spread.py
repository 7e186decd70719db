"""How much the smoke run's headline numbers move when the float arithmetic changes, and the
committed reference with tolerances derived from it (tests/reference/smoke.json).

Torch's CPU results differ between processors (kernel choice, SIMD width, BLAS blocking), and
SAE training amplifies the differences. This script stands in for "another processor" on one
machine by running the whole smoke workflow from scratch under settings that each change the
bytes of a plain matmul here:

* ``ATEN_CPU_CAPABILITY=avx2`` and ``=default``: ATen's vectorised kernels at a narrower SIMD
  width, or none (the machine's own is avx512 where it has it);
* ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility mode (other BLAS paths);
* ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN's convolution kernels (the ResNet towers) at a narrower ISA;
* ``--cores 1``: every job on one thread (reduction order), against the baseline's ``--cores 2``
  (Snakemake sets each job's ``OMP_NUM_THREADS`` to its thread count, ``min(threads, cores)``);
* all of them at once, at their narrowest (ATen ``default``, MKL ``COMPATIBLE``, oneDNN ``SSE41``,
  one core).

The reference value of each headline number (``saesuite.report.diff_runs.headline_numbers``) is the
baseline run's (one thread, the machine's own kernels); its tolerance is ``MULTIPLE`` times the
largest distance of any condition from the baseline, and never less than ``MULTIPLE`` times the
number's printing resolution for integers (an alive count that moved by 0 still gets 1·MULTIPLE).

    python benchmarks/smoke_spread.py                      # all conditions (~3 min each on 2 cores)
    python benchmarks/smoke_spread.py --reuse               # summarise runs already in --workdir
    python benchmarks/smoke_spread.py --write-reference     # also rewrite tests/reference/smoke.json

Writes results/bench/smoke_spread.json (every condition's numbers, the spread, the tolerances).
Rerun it, with --write-reference, after a change that is meant to move the smoke run's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "reference" / "smoke.json"
MULTIPLE = 4
# name: (environment, --cores)
CONDITIONS = {
    "baseline": ({}, 2),
    "aten-avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, 2),
    "aten-default": ({"ATEN_CPU_CAPABILITY": "default"}, 2),
    "mkl-compatible": ({"MKL_CBWR": "COMPATIBLE"}, 2),
    "onednn-avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 2),
    "one-core": ({}, 1),
    "all-at-once": ({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}, 1),
}
WORKFLOW = ("Snakefile", "rules", "workflow", "config", "profiles", "report", "paper")


def smoke_run(workdir: Path, env: dict[str, str], cores: int) -> Path:
    """The smoke workflow from scratch in a fresh copy of the workflow files; its run folder."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    for name in WORKFLOW:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, workdir / name)
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", "config/smoke.yaml"]
    proc = subprocess.run(cmd, cwd=workdir, env={**os.environ, "TQDM_DISABLE": "1", **env},
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"smoke run failed under {env}, --cores {cores}:\n{proc.stderr[-3000:]}")
    return workdir / "results" / "smoke"


def tolerances(runs: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Per number: the baseline value, every condition's distance from it, and the tolerance."""
    base = runs["baseline"]
    out = {}
    for key, value in base.items():
        distances = {name: abs(numbers[key] - value) for name, numbers in runs.items() if name != "baseline"}
        spread = max(distances.values())
        integer = all(float(numbers[key]).is_integer() for numbers in runs.values())
        floor = 1.0 if integer else 0.0
        out[key] = {"value": value, "spread": spread, "abs": MULTIPLE * max(spread, floor)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/saesuite-spread"))
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    parser.add_argument("--reuse", action="store_true", help="summarise runs already under --workdir")
    parser.add_argument("--write-reference", action="store_true", help=f"rewrite {REFERENCE.relative_to(REPO)}")
    args = parser.parse_args()
    seconds = {}
    for name in args.conditions:
        if not (args.reuse and (args.workdir / name / "results" / "smoke" / "provenance.json").is_file()):
            start = time.perf_counter()
            smoke_run(args.workdir / name, *CONDITIONS[name])
            seconds[name] = round(time.perf_counter() - start, 1)
            print(f"{name}: {seconds[name]} s", flush=True)
    from saesuite.report.diff_runs import headline_numbers

    runs = {name: headline_numbers(args.workdir / name / "results" / "smoke") for name in args.conditions}
    table = tolerances(runs)
    conditions = {n: {"env": CONDITIONS[n][0], "cores": CONDITIONS[n][1]} for n in runs}
    record = {"conditions": conditions, "multiple": MULTIPLE, "seconds": seconds,
              "numbers": runs, "tolerances": table}
    out = REPO / "results" / "bench" / "smoke_spread.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    width = max(map(len, table))
    for key, row in table.items():
        print(f"{key:<{width}}  {row['value']:<12.6g} spread {row['spread']:<10.3g} tolerance {row['abs']:.3g}")
    print(f"wrote {out}; largest relative spread "
          f"{max(r['spread'] / abs(r['value']) for r in table.values() if r['value']):.3g}")
    if args.write_reference:
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps({
            "description": (
                "Headline numbers of the smoke run (config/smoke.yaml) with tolerances: "
                f"{MULTIPLE} x the largest distance from the baseline run under "
                f"{', '.join(n for n in runs if n != 'baseline')} (integers at least {MULTIPLE} x 1). "
                "Made by benchmarks/smoke_spread.py --write-reference; checked by "
                "`saesuite diff-runs results/smoke tests/reference/smoke.json`."
            ),
            "conditions": conditions,
            "numbers": {k: {"value": r["value"], "abs": r["abs"], "spread": r["spread"]} for k, r in table.items()},
        }, indent=2) + "\n")
        print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    main()
