#!/usr/bin/env bash
# The ten-minute GPU check (benchmarks/gpu_check.py): caching RN50 and ViT-L/14, training the
# paper SAE, evaluation and comparison at the rehearsal's sizes, on one H100/H200 in bf16 with
# random weights and generated data. At most 8 minutes; writes results/bench/gpu.json.
#   bash benchmarks/gpu_check.sh            # from the repository root, on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke  # tiny sizes on a CPU: the code paths only
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
# the check's own limit, so a stalled step cannot eat the machine's time
exec timeout --signal=INT 480 "$PYTHON" benchmarks/gpu_check.py "$@"
