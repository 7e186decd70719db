#!/usr/bin/env bash
# Regenerate the per-rule unit tests in .tests/unit from a fresh smoke run:
#   bash .tests/regenerate.sh
# Runs the smoke workflow (and the paper) from scratch in a temporary copy of the workflow's
# tracked files, keeping temporary files (--notemp) so every rule's inputs exist, then lets
# `snakemake --generate-unit-tests` record, for each rule, one job's inputs (data/), outputs
# (expected/) and the config. The generated test_<rule>.py files and their folders replace
# those in .tests/unit; the project's own common.py (how outputs are compared) and conftest.py
# are kept. Regenerate after a change that is meant to change a rule's output, and commit.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$repo"
# the workflow's files as they are in the work tree (new files included, deleted ones left out)
git ls-files -z --cached --others --exclude-standard Snakefile rules workflow config profiles report paper |
    while IFS= read -r -d '' f; do [ -e "$f" ] && cp --parents "$f" "$work"; done
cd "$work"
export OMP_NUM_THREADS=1 TQDM_DISABLE=1
targets=(all paper)
"$python" -m snakemake "${targets[@]}" --cores 2 --notemp --configfile config/smoke.yaml
"$python" -m snakemake "${targets[@]}" --cores 1 --generate-unit-tests .tests/unit --configfile config/smoke.yaml

cd "$repo/.tests/unit"
find . -mindepth 1 -maxdepth 1 ! -name common.py ! -name conftest.py ! -name __init__.py -exec rm -rf {} +
cd "$work/.tests/unit"
find . -mindepth 1 -maxdepth 1 ! -name common.py ! -name conftest.py -exec cp -r {} "$repo/.tests/unit/" \;
echo "regenerated: $(ls "$repo"/.tests/unit/test_*.py | wc -l) rule tests in .tests/unit ($(du -sh "$repo/.tests/unit" | cut -f1))"
