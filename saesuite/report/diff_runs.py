"""Audit two runs: ``saesuite diff-runs RUN_A RUN_B [--tolerances FILE] [--json]``.

A run folder is ``results/<run>/`` with its ``provenance.json`` (see :mod:`saesuite.report.provenance`).
The report has four parts:

* files: every output as identical / differing / only in A / only in B, from the sha256 sums the
  two provenance records hold (nothing is re-hashed); logs and timings (``logs/``,
  ``benchmarks/``), which differ on every rerun, are counted apart;
* values: every ``*.json`` output both records list is flattened to keys
  ``<path relative to the run>:<dotted.key>`` (list indices as numbers), e.g.
  ``eval/tiny-RN/metrics.json:explained_variance`` or
  ``compare/tiny-RN__tiny-ViT/comparison.json:linear_cka.value``, and each leaf is compared;
* config and packages (and git / device): the entries that differ, and how many are equal.

Tolerances. Without a tolerances file every value must be equal (one machine gives identical
bytes). A tolerances file ``{"numbers": {"<key>": {"abs": 1e-3, "rel": 0.01}, ...}}`` states
which values may move and by how much: a listed number passes when
``|a - b| <= max(abs, rel * max(|a|, |b|))`` (``math.isclose``); a listed value that is not a
pair of numbers (a changed string or bool, null against a number, a key one side lacks) fails;
values it does not list are reported as "no tolerance stated" and do not fail.

RUN_B may instead be a reference file, the same format with a ``value`` per key
(``{"description": ..., "numbers": {"<key>": {"value": 0.81, "abs": 0.02}}}``): only those
keys are read from RUN_A and compared, each against its own tolerance unless a tolerances file
is given. :func:`headline_numbers` gives the keys and values such a reference records.

Keys, values, tolerances and the readers of runs and number files are in
:mod:`saesuite.report.run_values`; :mod:`saesuite.report.diff_render` prints the report.

Exit status (through the CLI): 0 when every checked value is within tolerance, 1 otherwise,
2 for a usage error (a missing run folder or provenance record, a bad tolerances file).
"""

from __future__ import annotations

from pathlib import Path

from saesuite.errors import ConfigError
from saesuite.report.run_values import (
    MISSING,
    OUT,
    PROVENANCE,
    UNSTATED,
    WITHIN,
    RunValues,
    Tolerance,
    compare_value,
    flatten,
    is_number,
    make_key,
    read_numbers_file,
    read_provenance,
    read_tolerances,
    same,
    show,
    split_key,
)

VOLATILE = ("logs/", "benchmarks/")  # rewritten on every rerun: log lines and timings
METRICS_KEYS = ("explained_variance", "l0", "dead_fraction")
# score records of comparison.json whose ``value`` is a headline number
COMPARISON_SCORES = (
    "topk_overlap", "topk_overlap_b_to_a", "overlap_pairing", "correlation_pairing",
    "linear_cka", "debiased_cka", "rbf_cka", "mutual_knn",
    "linear_cka_codes", "debiased_cka_codes", "rbf_cka_codes", "mutual_knn_codes",
)
# plain numbers of comparison.json: alive latents (positive on at least k images), and the
# pairing fractions over B's alive latents
COMPARISON_NUMBERS = ("alive_a", "alive_b", "overlap_pairing_b", "correlation_pairing_b")


def diff_files(outputs_a: dict[str, str], outputs_b: dict[str, str]) -> dict:
    """Output paths by status, from two ``{path: sha256}`` maps; logs and timings counted apart."""
    out = {"identical": [], "differing": [], "only_in_a": [], "only_in_b": [], "volatile_differing": []}
    for path in sorted(outputs_a.keys() | outputs_b.keys()):
        if path not in outputs_b:
            out["only_in_a"].append(path)
        elif path not in outputs_a:
            out["only_in_b"].append(path)
        elif outputs_a[path] == outputs_b[path]:
            out["identical"].append(path)
        elif path.startswith(VOLATILE):
            out["volatile_differing"].append(path)
        else:
            out["differing"].append(path)
    return out


def diff_mapping(a: dict, b: dict) -> dict:
    """Flattened entries of two mappings that differ, side by side, and the count of equal ones."""
    fa, fb = flatten(a), flatten(b)
    differing = {}
    for key in sorted(fa.keys() | fb.keys()):
        va, vb = fa.get(key, MISSING), fb.get(key, MISSING)
        if not same(va, vb):
            differing[key] = [va, vb]
    return {"differing": differing, "equal": len(fa.keys() | fb.keys()) - len(differing)}


def _result_jsons(run_a: Path, run_b: Path, outputs_a: dict, outputs_b: dict) -> tuple[list[str], list[str]]:
    """The ``*.json`` outputs both records list, and those of them left out because a run folder
    no longer holds them (a pruned cache) while their sha256 agree: their values are equal."""
    paths, pruned = [], []
    for path in sorted(p for p in outputs_a.keys() & outputs_b.keys() if p.endswith(".json") and p != PROVENANCE):
        if (run_a / path).is_file() and (run_b / path).is_file():
            paths.append(path)
        elif outputs_a[path] == outputs_b[path]:
            pruned.append(path)
        else:
            gone = run_a / path if not (run_a / path).is_file() else run_b / path
            raise ConfigError(f"{gone} is missing, and its sha256 differs between the runs' provenance records: "
                              "its numbers cannot be compared; restore the file (or rerun)")
    return paths, pruned


def diff_values(run_a: Path, run_b: Path, paths: list[str],
                tolerances: dict[str, Tolerance] | None) -> tuple[list[dict], set[str]]:
    """Differing leaves of the JSON files ``paths`` of two runs, and the keys of every leaf checked."""
    a, b = RunValues(run_a), RunValues(run_b)
    entries, checked = [], set()
    for path in paths:
        fa, fb = a.file(path, required=True), b.file(path, required=True)
        for dotted in sorted(fa.keys() | fb.keys()):
            key = make_key(path, dotted)
            checked.add(key)
            entry = compare_value(key, fa.get(dotted, MISSING), fb.get(dotted, MISSING), tolerances)
            if entry is not None:
                entries.append(entry)
    return entries, checked


def _summary(report: dict) -> dict:
    files = report.get("files") or {}
    values = report["values"]
    return {
        "files_differing": len(files.get("differing", [])) + len(files.get("only_in_a", [])) + len(files.get("only_in_b", [])),
        "out_of_tolerance": sum(e["status"] == OUT for e in values),
        "no_tolerance_stated": sum(e["status"] == UNSTATED for e in values),
        "within_tolerance": sum(e["status"] == WITHIN for e in values),
        "checked": report["checked"],
    }


def _unused_tolerances(tolerances: dict[str, Tolerance] | None, seen: set[str]) -> list[str]:
    return sorted(set(tolerances or ()) - seen)


def diff_runs(run_a: Path | str, run_b: Path | str, tolerances: dict[str, Tolerance] | None = None) -> dict:
    """The report of two run folders (see the module docstring); ``report["ok"]`` is the verdict."""
    run_a, run_b = Path(run_a), Path(run_b)
    prov_a, prov_b = read_provenance(run_a), read_provenance(run_b)
    paths, pruned = _result_jsons(run_a, run_b, prov_a["outputs"], prov_b["outputs"])
    values, checked = diff_values(run_a, run_b, paths, tolerances)
    report = {
        "mode": "runs",
        "run_a": str(run_a),
        "run_b": str(run_b),
        "files": diff_files(prov_a["outputs"], prov_b["outputs"]),
        "json_files": len(paths),
        "json_files_absent": pruned,
        "tolerances": "equality" if tolerances is None else "tolerances file",
        "values": values,
        "checked": len(checked),
        "unused_tolerances": _unused_tolerances(tolerances, checked),
        "config": diff_mapping(prov_a["config"], prov_b["config"]),
        "packages": diff_mapping(prov_a["packages"], prov_b["packages"]),
        "environment": diff_mapping({k: prov_a.get(k) for k in ("git", "device")},
                                    {k: prov_b.get(k) for k in ("git", "device")}),
    }
    return _finish(report)


def diff_reference(run: Path | str, reference: Path | str, tolerances: dict[str, Tolerance] | None = None) -> dict:
    """The report of a run folder against a reference file: only the keys it lists, each
    against its own tolerance, or against ``tolerances`` when given."""
    run, reference = Path(run), Path(reference)
    if not run.is_dir():
        raise ConfigError(f"{run} is not a run folder (results/<run>/)")
    entries = read_numbers_file(reference, reference=True)
    own = {key: entry["tolerance"] for key, entry in entries.items()}
    active = own if tolerances is None else tolerances
    values_a = RunValues(run)
    values = []
    for key, entry in entries.items():
        path, dotted = split_key(key)
        leaves = values_a.file(path, required=False)
        found = MISSING if leaves is None else leaves.get(dotted, MISSING)
        result = compare_value(key, found, entry["value"], active)
        if result is not None:
            values.append(result)
    report = {
        "mode": "reference",
        "run_a": str(run),
        "run_b": str(reference),
        "tolerances": "reference" if tolerances is None else "tolerances file",
        "values": values,
        "checked": len(entries),
        "unused_tolerances": _unused_tolerances(tolerances, set(entries)),
    }
    return _finish(report)


def _finish(report: dict) -> dict:
    report["summary"] = _summary(report)
    report["ok"] = report["summary"]["out_of_tolerance"] == 0
    return report


def diff(run_a: Path | str, run_b: Path | str, tolerances_file: Path | str | None = None) -> dict:
    """``diff_runs`` or, when ``run_b`` is a file, ``diff_reference``; reads the tolerances file."""
    tolerances = read_tolerances(tolerances_file) if tolerances_file is not None else None
    run_b = Path(run_b)
    if run_b.is_file():
        return diff_reference(run_a, run_b, tolerances)
    if not run_b.exists():
        raise ConfigError(f"{run_b} is neither a run folder nor a reference JSON file")
    return diff_runs(run_a, run_b, tolerances)


# --- headline numbers -------------------------------------------------------------------------


def headline_keys(config: dict) -> list[str]:
    """Keys of the headline numbers of a (non-planted) run with this config: per model
    ``explained_variance``, ``l0``, ``dead_fraction`` of metrics.json; of the pair's
    comparison.json the alive latent counts (``alive_a``, ``alive_b``: latents positive on at
    least k compared images), the ``value`` of each score in :data:`COMPARISON_SCORES` and the
    pairing fractions over B (``overlap_pairing_b``, ``correlation_pairing_b``)."""
    if config.get("planted"):
        raise ConfigError("a planted run has no model pair: headline numbers are those of a run with models and compare")
    try:
        models, a, b = list(config["models"]), config["compare"]["a"], config["compare"]["b"]
    except (KeyError, TypeError):
        raise ConfigError("the run's config has no 'models' or no 'compare: {a, b}'") from None
    keys = [make_key(f"eval/{m}/metrics.json", name) for m in models for name in METRICS_KEYS]
    pair = f"compare/{a}__{b}/comparison.json"
    keys += [make_key(pair, name) for name in COMPARISON_NUMBERS]
    keys += [make_key(pair, f"{name}.value") for name in COMPARISON_SCORES]
    return keys


def headline_numbers(run: Path | str) -> dict[str, float | None]:
    """The headline numbers of a run folder, keyed as in :func:`headline_keys` (config from
    its provenance.json); ``None`` where the run records a score as undefined (null)."""
    run = Path(run)
    values = RunValues(run)
    out: dict[str, float | None] = {}
    for key in headline_keys(read_provenance(run)["config"]):
        path, dotted = split_key(key)
        leaves = values.file(path, required=True)
        value = leaves.get(dotted, MISSING)
        if not (is_number(value) or value is None):
            raise ConfigError(f"{run / path} has no number at '{dotted}' (found {show(value)})")
        out[key] = None if value is None else float(value)
    return out
