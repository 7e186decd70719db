"""Checks of a workflow config against this machine, before any job runs.

``rules/common.smk`` calls :func:`preflight` while Snakemake parses the workflow, so a plain run
and ``snakemake -n`` alike stop at once, with every problem in one message, instead of planning
a hundred jobs that cannot run or failing in the first of them. It checks:

* **dataset**: ``dataset.root`` and its split folders exist (ImageNet: ``train/`` and ``val/``
  with class folders; CIFAR-10: the ``cifar-10-batches-py`` files of each split). Skipped for the
  smoke fixture, which the workflow's ``cifar10_fixture`` rule makes, and for CIFAR-10 with
  ``dataset.download: true``;
* **models**: every model name is one open_clip knows or the suite registers (``tiny-ViT``,
  ``tiny-RN``), and every hook exists in that model's config (site, block index);
* **device**: a ``cuda`` device in the config has a CUDA GPU on this machine. Under a cluster
  executor (``--profile profiles/slurm``) the jobs run elsewhere, so this check is skipped, with
  a note saying so.

Nothing here imports Snakemake, torch (but for a ``cuda`` device) or open_clip: model names and
configs are read from open_clip's config files, as ``open_clip.list_models()`` reads them. The
environment variable ``SAESUITE_PREFLIGHT_SKIP`` (comma-separated: ``dataset``, ``models``,
``device``, or ``all``) turns checks off, e.g. for data that only the compute nodes see.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from saesuite.errors import ConfigError
from saesuite.models.hooks import HookSpec, hook_problem, unknown_model_message

SKIP_ENV = "SAESUITE_PREFLIGHT_SKIP"
CHECKS = ("dataset", "models", "device")
# Snakemake modes that run no job (their flags on the parsed command line): nothing to check
NO_JOB_MODES = (
    "lint", "list_rules", "list_target_rules", "print_compilation", "containerize", "generate_unit_tests", "dag",
    "rulegraph", "filegraph", "d3dag", "unlock", "cleanup_metadata", "conda_cleanup_envs", "conda_create_envs_only",
    "list_conda_envs", "cleanup_shadow", "container_cleanup_images", "list_changes", "list_input_changes",
    "list_params_changes", "list_untracked", "summary", "detailed_summary", "archive", "delete_all_output",
    "delete_temp_output",
)
LOCAL_EXECUTORS = (None, "local", "dryrun", "touch")
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def runs_jobs(cli_args) -> bool:
    """Whether Snakemake, given its parsed command line (None: called from its API), plans or runs jobs."""
    if cli_args is None:
        return True
    if getattr(cli_args, "report", None) and not getattr(cli_args, "report_after_run", False):
        return False
    return not any(getattr(cli_args, mode, None) for mode in NO_JOB_MODES)


def skipped_checks(env: dict | None = None) -> set[str]:
    """The checks ``SAESUITE_PREFLIGHT_SKIP`` turns off; an unknown name is a ConfigError."""
    value = (os.environ if env is None else env).get(SKIP_ENV, "")
    names = {n.strip() for n in value.split(",") if n.strip()}
    if "all" in names:
        return set(CHECKS)
    unknown = names - set(CHECKS)
    if unknown:
        raise ConfigError(f"{SKIP_ENV} names {', '.join(sorted(unknown))}; known checks: {', '.join(CHECKS)}, all")
    return names


def known_model_configs() -> dict[str, dict]:
    """``{name: config}`` of every model ``open_clip.list_models()`` lists once the suite's tiny
    configs are registered: the JSON files of open_clip's ``model_configs`` and of the suite's."""
    folders = [Path(__file__).parent / "model_configs"]
    spec = importlib.util.find_spec("open_clip")  # finds the package without importing it (and torch)
    if spec is not None and spec.submodule_search_locations:
        folders.insert(0, Path(next(iter(spec.submodule_search_locations))) / "model_configs")
    configs = {}
    for folder in folders:
        for file in sorted(folder.glob("*.json")):
            cfg = json.loads(file.read_text())
            if all(key in cfg for key in ("embed_dim", "vision_cfg", "text_cfg")):  # open_clip's own test
                configs[file.stem] = cfg
    return configs


def dataset_problems(dataset: dict) -> list[str]:
    """Why the dataset the config names is not on disk where the jobs will look, one line each."""
    if dataset.get("fixture") or (dataset["kind"] == "cifar10" and dataset.get("download")):
        return []  # the workflow's fixture rule makes it / torchvision downloads it
    root = Path(dataset["root"])
    splits = dict.fromkeys((dataset["train_split"], dataset["eval_split"]))
    if not root.is_dir():
        what = "a file, not a folder" if root.exists() else "missing"
        layout = ("train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted into class folders)"
                  if dataset["kind"] == "imagenet" else f"{CIFAR_DIR}/ (the extracted CIFAR-10 python archive)")
        return [f"dataset.root: {root.resolve()} is {what}; it must hold {layout}. Set dataset.root to where "
                "the data is" + (", or dataset.download: true" if dataset["kind"] == "cifar10" else "")]
    problems = []
    if dataset["kind"] == "imagenet":
        for split in splits:
            folder = root / split
            if not folder.is_dir():
                problems.append(f"dataset.root: ImageNet split {split!r} not found: no folder {folder.resolve()} "
                                f"(one sub-folder per class, e.g. {folder}/n01440764/*.JPEG)")
            elif not any(entry.is_dir() for entry in os.scandir(folder)):
                problems.append(f"dataset.root: ImageNet split {split!r} at {folder.resolve()} has no class folders "
                                f"(e.g. {folder}/n01440764/*.JPEG); sort its images into one folder per class")
        return problems
    base = root / CIFAR_DIR
    missing = [name for split in splits for name in ["batches.meta", *CIFAR_FILES[split]] if not (base / name).is_file()]
    if missing:
        problems.append(f"dataset.root: CIFAR-10 not found: {base.resolve()} lacks {', '.join(dict.fromkeys(missing))}. "
                        "Put the extracted 'cifar-10-batches-py' folder under dataset.root, or set dataset.download: true")
    return problems


def model_problems(models: dict, known: dict[str, dict] | None = None) -> list[str]:
    """Why a model of ``models`` (``{name: {pretrained, hook}}``) or its hook cannot be built, one line each."""
    known = known_model_configs() if known is None else known
    problems = []
    for name, model in models.items():
        if name not in known:
            problems.append(f"models.{name}: {unknown_model_message(name, sorted(known))}")
            continue
        try:
            problem = hook_problem(name, HookSpec.parse(model["hook"]), known[name])
        except ConfigError as err:
            problem = str(err)
        if problem:
            problems.append(f"models.{name}.hook: {problem}")
    return problems


def configured_devices(config: dict, planted: bool = False) -> dict[str, str]:
    """``{dotted key: device}`` of every stage the workflow runs (a sweep entry may override train's)."""
    sections = ("train", "replication", "evaluate") if planted else ("cache", "train", "replication", "evaluate", "compare")
    devices = {}
    for section in sections:
        values = config.get(section)
        if isinstance(values, dict) and "device" in values:
            devices[f"{section}.device"] = str(values["device"])
    for entry in (config.get("train") or {}).get("sweep", []):
        if "device" in entry:
            devices[f"train.sweep.{entry.get('name', '?')}.device"] = str(entry["device"])
    return devices


def device_problems(devices: dict[str, str]) -> list[str]:
    """Why a ``cuda`` device of ``devices`` cannot be used on this machine (torch is imported only then)."""
    cuda = {key: value for key, value in devices.items() if value.startswith("cuda")}
    if not cuda:
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return [f"{', '.join(cuda)}: {', '.join(sorted(set(cuda.values())))} asked for, but torch {torch.__version__} "
                f"sees no CUDA GPU on this machine (CUDA build: {torch.version.cuda}). Run on a GPU machine, use a "
                "cluster profile (--profile profiles/slurm), or set these devices to cpu or auto"]
    return [f"{key}: {value} asked for, but this machine has {count} CUDA GPU{'s' * (count > 1)} (cuda:0..cuda:{count - 1})"
            for key, value in cuda.items() if value.partition(":")[2] and int(value.partition(":")[2]) >= count]


def preflight(config: dict, *, planted: bool = False, executor: str | None = None, source: str = "config",
              env: dict | None = None) -> list[str]:
    """Check ``config`` against this machine (module docstring); return notes to print.

    ``executor`` is the Snakemake executor the run uses (``slurm`` under profiles/slurm; None or
    ``local`` for this machine). Every problem found goes into one :class:`ConfigError`.
    """
    skip = skipped_checks(env)
    problems, notes = [], []
    if not planted:
        if "dataset" not in skip:
            problems += dataset_problems(config["dataset"])
        if "models" not in skip:
            problems += model_problems(config["models"])
    devices = configured_devices(config, planted)
    cuda = [key for key, value in devices.items() if value.startswith("cuda")]
    if "device" not in skip and cuda:
        if executor in LOCAL_EXECUTORS:
            problems += device_problems(devices)
        else:
            notes.append(f"saesuite preflight: not checking this machine for a CUDA GPU ({', '.join(cuda)}): the "
                         f"{executor} executor runs the jobs on the machines it assigns")
    if problems:
        raise ConfigError(
            f"{source}: {len(problems)} problem{'s' * (len(problems) > 1)} found before any job ran "
            f"(checks: {', '.join(c for c in CHECKS if c not in skip)}; {SKIP_ENV}=... turns one off):\n  "
            + "\n  ".join(problems)
        )
    return notes
