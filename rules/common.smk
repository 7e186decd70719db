# Config checks beyond the schema, the preflight checks against this machine, names used by
# every rule, and input functions.
import os
import re
import sys
from pathlib import Path

from saesuite.cache.format import INDEX_REGEX, LABELS, MANIFEST, SHARD_FILES, shard_file
from saesuite.preflight import preflight, runs_jobs
from saesuite.schema import stage_options


def _check_config(config):
    """Cross-references the schema cannot express; each message names the key and the fix."""
    models, dataset, compare = config["models"], config["dataset"], config["compare"]
    for key in ("a", "b"):
        if compare[key] not in models:
            raise ValueError(
                f"config: compare.{key} is {compare[key]!r}, which is not a key of models "
                f"({', '.join(models)}); name one of those models"
            )
    if compare["a"] == compare["b"]:
        raise ValueError("config: compare.a and compare.b name the same model; compare two different models")
    splits = {"imagenet": ("train", "val"), "cifar10": ("train", "test")}[dataset["kind"]]
    for key in ("train_split", "eval_split"):
        if dataset[key] not in splits:
            raise ValueError(
                f"config: dataset.{key} is {dataset[key]!r}; {dataset['kind']} has splits {', '.join(splits)}"
            )
    if config.get("fixture") and not dataset.get("fixture"):
        raise ValueError("config: a fixture section is given but dataset.fixture is false; set it to true")
    if dataset.get("fixture") and not config.get("fixture"):
        raise ValueError(
            "config: dataset.fixture is true but there is no fixture section (n_train, n_test, seed) to build it"
        )
    extra = {"classes", "width", "height"} & set(config.get("fixture") or {})
    if dataset.get("fixture") and dataset["kind"] == "cifar10" and extra:
        raise ValueError(
            f"config: fixture.{', '.join(sorted(extra))} only size an imagenet fixture; cifar10's is fixed"
        )
    if config.get("replication") and config["replication"]["model"] not in models:
        raise ValueError(
            f"config: replication.model is {config['replication']['model']!r}, which is not a key of models "
            f"({', '.join(models)}); name one of those models"
        )
    if config["seed"] in config["train"]["extra_seeds"]:
        raise ValueError(
            f"config: train.extra_seeds holds {config['seed']}, the seed of the main SAEs; list other seeds"
        )
    for entry in [config["train"], *config["train"]["sweep"]]:
        if entry.get("architecture", config["train"]["architecture"]) == "topk" and not entry.get("k"):
            raise ValueError(
                f"config: train{'.sweep ' + entry['name'] if 'name' in entry else ''} is topk but k is not set"
            )


RUN = f"results/{config['run']}"
# Planted-dictionary mode (config/planted.yaml): synthetic caches stand in for a dataset and models.
PLANTED = bool(config.get("planted"))
SWEEP = [entry["name"] for entry in config["train"]["sweep"]]
EXTRA_SEEDS = list(config["train"]["extra_seeds"])
# the options of every SAE (a sweep entry overrides some): a change to the sweep or the extra
# seeds does not retrain the SAEs it does not touch
TRAIN_OPTIONS = stage_options("train", config["train"])

if PLANTED:
    MODELS, TRAIN_SPLIT, EVAL_SPLIT = ["planted"], "train", "test"
    SHARDS = dict.fromkeys((TRAIN_SPLIT, EVAL_SPLIT), config["planted"]["shards"])
else:
    _check_config(config)
    MODELS = list(config["models"])
    A, B = config["compare"]["a"], config["compare"]["b"]
    PAIR = f"{A}__{B}"
    TRAIN_SPLIT = config["dataset"]["train_split"]
    EVAL_SPLIT = config["dataset"]["eval_split"]
    SHARDS = {TRAIN_SPLIT: config["cache"]["train_shards"], EVAL_SPLIT: config["cache"]["eval_shards"]}
    DATA_ROOT = config["dataset"]["root"]
    FIXTURE = f"{DATA_ROOT}/cifar-10-batches-py/saesuite-fixture.json"
    # the generated ImageFolder in ImageNet's layout (config/rehearsal.yaml): its marker, written last
    IMAGENET_FIXTURE = f"{DATA_ROOT}/saesuite-fixture.json"
    # real CIFAR-10 fetched by torchvision (dataset.download): one job downloads it before any cache job
    DOWNLOAD_CIFAR10 = (
        config["dataset"]["kind"] == "cifar10" and config["dataset"].get("download") and not config.get("fixture")
    )
    # every file of the CIFAR-10 layout: what the fixture writes beside its marker, or the download
    FIXTURE_FILES = [
        f"{DATA_ROOT}/cifar-10-batches-py/{name}"
        for name in ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
    ]


def snakemake_cli_args():
    """The arguments Snakemake's command line parsed, profiles merged in (None when Snakemake runs
    from its Python API). The Snakefile is parsed before the executor is set up, so its frame is
    where the executor (`slurm` under profiles/slurm) and the mode (-n, --unlock, ...) are seen."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "args_to_api" and "args" in frame.f_locals:
            return frame.f_locals["args"]
        frame = frame.f_back
    return None


# Preflight (saesuite/preflight.py): the dataset, every model and hook, and a CUDA GPU for `device:
# cuda` are checked before any job runs, -n included; only in the main Snakemake process (not
# in a cluster job re-reading this file) and when jobs are planned (not for --unlock, --summary...).
# Under a cluster executor the GPU check is left to the machines that run the jobs (a printed note).
_CLI = snakemake_cli_args()
if workflow.is_main_process and runs_jobs(_CLI):
    for _note in preflight(
        config,
        planted=PLANTED,
        executor=getattr(_CLI, "executor", None),
        source=" ".join(os.path.relpath(f) for f in workflow.overwrite_configfiles or ["config/config.yaml"]),
    ):
        print(_note, file=sys.stderr)


# The baseline replication (config key `replication`): one more SAE of one model, trained with the
# baseline's own recipe and run settings, evaluated beside the main SAEs (sae/{model}/replication/).
REPLICATION = stage_options("replication", config.get("replication") or {})
REPLICATED = [config["replication"]["model"]] if config.get("replication") else []


def sae_model(sae):
    """The model of an SAE path wildcard: `ViT-L-14` or `ViT-L-14/replication`."""
    return sae.split("/")[0]


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    sae=f"({'|'.join(re.escape(m) for m in MODELS)})(/replication)?",
    split=f"{re.escape(TRAIN_SPLIT)}|{re.escape(EVAL_SPLIT)}",
    index=INDEX_REGEX,
    sae_seed=r"\d+",


def gpus(device):
    """The `gpu` resource of a job: 1 when its device is CUDA."""
    return 1 if str(device).startswith("cuda") else 0


def dataset_input(wildcards):
    """The fixture's files when the config builds one, or CIFAR-10's when the workflow downloads it (a
    workflow output, so parallel cache jobs never download into one folder); real data is external.
    Every file a rule reads is declared, so a rule's generated unit test (.tests/unit) has them."""
    if DOWNLOAD_CIFAR10:
        return FIXTURE_FILES
    if not config.get("fixture"):
        return []
    return [IMAGENET_FIXTURE] if config["dataset"]["kind"] == "imagenet" else [FIXTURE, *FIXTURE_FILES]


def shard_paths(model, split, n, kind="npy"):
    """The `kind` file (npy, labels, record: saesuite.cache.format.SHARD_FILES) of each of a cache's `n` shards."""
    return [f"{RUN}/cache/{model}/{split}/{shard_file(kind, i)}" for i in range(n)]


def cache_embeds(model, split):
    """The image-embedding files of a cache's shards (evaluation names latents from them)."""
    return shard_paths(model, split, SHARDS[split], "embed")


def shard_files(kind):
    """Input function: every shard's `kind` file of the cache of the job's model and split."""
    return lambda w: shard_paths(w.model, w.split, SHARDS[w.split], kind)


def cache_manifest(model, split):
    return f"{RUN}/cache/{model}/{split}/{MANIFEST}"


def cache_data(model, split):
    """The files a cache's reader opens besides its manifest: labels and every shard."""
    return [f"{RUN}/cache/{model}/{split}/{LABELS}", *shard_paths(model, split, SHARDS[split])]


def seed_sae_files(model, filename):
    """`filename` of every extra-seed SAE of `model` (train.extra_seeds)."""
    return [f"{RUN}/sae/{model}/seeds/{seed}/{filename}" for seed in EXTRA_SEEDS]


def sweep_files(model, filename):
    """`filename` (cfg.json, sae_weights.safetensors, train_log.jsonl) of every sweep SAE of `model`."""
    return [f"{RUN}/sae/{model}/sweep/{name}/{filename}" for name in SWEEP]


def sae_files(model, filename):
    """`filename` of `model`'s main SAE, then of every sweep SAE (the names `main`, *SWEEP)."""
    return [f"{RUN}/sae/{model}/{filename}", *sweep_files(model, filename)]
