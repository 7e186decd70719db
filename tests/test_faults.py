"""Faults caught early and explained (issue 14): concurrent runs on one output folder, finite
divergence, recovery advice that works, output paths checked before the work, preflight checks of
the workflow, and a job's error as the suite's one-line message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from saesuite import preflight as pf
from saesuite.cli import main
from saesuite.errors import BusyError, CacheError, ConfigError, TrainingError
from saesuite.outputs import LOCK_NAME, atomic_path, default_file_mode, output_lock, temp_path
from saesuite.cache.planted import write_array_cache
from saesuite.sae.config import TrainConfig
from saesuite.sae.train import CHECKPOINT, train_sae
from saesuite.sae.trainer import Trainer

from tests.smoke import dry_run_with

SMALL = dict(lr_warmup_samples=256, l1_warmup_samples=512, b_dec_init_samples=256, dead_window_samples=2048,
             device="cpu", b_dec_init="mean")
OUTPUTS = {"cfg.json", "sae_weights.safetensors", "train_log.jsonl"}
HOLD = """
import sys, time
from saesuite.outputs import output_lock
with output_lock(sys.argv[1], *sys.argv[2:]):
    print("held", flush=True)
    time.sleep(300)
"""


def hold(folder: Path, *name: str) -> subprocess.Popen:
    """Another process holding the lock of ``folder`` (and lock file ``name``) until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), *name], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def strict_json_lines(path: Path) -> list[dict]:
    """Every line of a JSON-lines file, refusing NaN and Infinity (not JSON)."""
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def small_cache(path: Path, rows: int = 512, d: int = 8, seed: int = 1) -> Path:
    return write_array_cache(path, np.random.default_rng(seed).normal(size=(rows, d)).astype(np.float32), n_shards=2)


# --- 1. two runs on one output folder ------------------------------------------------------------


def test_a_second_process_is_refused_naming_the_holder_and_a_killed_holder_blocks_nothing(tmp_path):
    out = tmp_path / "out"
    holder = hold(out)
    try:
        with pytest.raises(BusyError, match=rf"{out} is in use by another saesuite run \(process {holder.pid} on "):
            with output_lock(out):
                pass
    finally:
        kill(holder)
    assert (out / LOCK_NAME).exists()  # a killed run leaves its lock file...
    with output_lock(out):  # ...which blocks nothing: the system released the lock with the process
        with output_lock(out):  # re-entrant within one process
            pass
    assert not (out / LOCK_NAME).exists()  # removed on release: a finished run's folder holds only its outputs


def test_two_concurrent_train_commands_on_one_folder(tmp_path):
    cache, out = small_cache(tmp_path / "c"), tmp_path / "sae"
    train = [sys.executable, "-m", "saesuite", "train", str(cache), str(out), "--expansion", "2", "--batch-size", "64",
             "--device", "cpu"]
    first = subprocess.Popen([*train, "--samples", str(10**9), "--checkpoint-every", str(10**9)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / LOCK_NAME).is_file() or not (out / LOCK_NAME).read_text().strip():
            assert first.poll() is None and time.time() < deadline, "the first run did not start training"
            time.sleep(0.05)
        second = subprocess.run([*train, "--samples", "640"], capture_output=True, text=True)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"is in use by another saesuite run (process {first.pid} on " in second.stderr
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        kill(first)
    rerun = subprocess.run([*train, "--samples", "640"], capture_output=True, text=True)  # the killed run blocks nothing
    assert rerun.returncode == 0, rerun.stderr
    assert {p.name for p in out.iterdir()} == OUTPUTS  # no lock, no temporary file left


def test_evaluate_compare_and_a_cache_shard_refuse_a_folder_another_process_writes(tmp_path):
    from saesuite.cache.writer import cache_shard
    from saesuite.compare.saes import compare_saes
    from saesuite.evaluate.evaluation import evaluate_sae
    from saesuite.models.hooks import HookSpec

    holders = [hold(tmp_path / "eval"), hold(tmp_path / "cmp"), hold(tmp_path / "cache", ".shard-00000.lock")]
    try:
        # refused before the (missing) inputs are even opened
        with pytest.raises(BusyError, match=f"process {holders[0].pid} "):
            evaluate_sae(tmp_path / "no-sae", tmp_path / "no-cache", tmp_path / "eval")
        with pytest.raises(BusyError, match=f"process {holders[1].pid} "):
            compare_saes(tmp_path / "x", tmp_path / "x", tmp_path / "y", tmp_path / "y", tmp_path / "cmp")
        backbone = SimpleNamespace(hook=HookSpec("attnpool"), d=4)  # nothing of it is used before the lock
        with pytest.raises(BusyError, match=f"process {holders[2].pid} "):
            cache_shard(backbone, None, tmp_path / "cache", 0, 2, dataset_name="cifar10", split="test")
        with output_lock(tmp_path / "cache", ".shard-00001.lock"):  # another shard of the same cache is free
            pass
    finally:
        for proc in holders:
            kill(proc)


def test_temporary_names_are_unique_and_never_left_behind(tmp_path):
    names = {temp_path(tmp_path / "checkpoint.pt").name for _ in range(100)}
    assert len(names) == 100 and all(n.startswith(f"checkpoint.pt.{os.getpid()}-") and n.endswith(".tmp") for n in names)
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "f.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
    # a killed run's temporary file is removed by the next holder of the folder's lock
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint.pt.4242-0123abcd.tmp").write_bytes(b"half written")
    (out / "notes.tmp").write_text("not ours")
    with output_lock(out):
        pass
    assert sorted(p.name for p in out.iterdir()) == ["notes.tmp"]


# --- 2. divergence that stays finite ------------------------------------------------------------


def test_finite_divergence_stops_training_keeps_the_last_good_checkpoint_and_a_lower_lr_resumes(tmp_path, monkeypatch, capsys):
    import saesuite.sae.trainer as train_module

    cache, out = small_cache(tmp_path / "c"), tmp_path / "sae"
    cfg = TrainConfig(expansion=2, batch_size=64, samples=64 * 40, checkpoint_every_steps=8, **SMALL)
    # from the update of step 23 on, the lr is 1e2: the loss stays finite but the weights blow up,
    # and the checkpoint due after that update (step 24) must not keep them
    normal_lr = train_module.lr_at
    monkeypatch.setattr(train_module, "lr_at", lambda step, c: 1e2 if step >= 23 else normal_lr(step, c))
    with pytest.raises(TrainingError) as raised:
        train_sae(cache, out, cfg)
    message = str(raised.value)
    assert "training diverged at step 24" in message and "times its energy" in message
    assert f"The last good checkpoint (step 16) is kept in {out / CHECKPOINT}" in message
    assert "Lower the learning rate" in message and "resumes from that checkpoint" in message
    assert not (out / "sae_weights.safetensors").exists()
    state = torch.load(out / CHECKPOINT, weights_only=False)
    assert state["step"] == 16
    assert all(torch.isfinite(v).all() and v.abs().max() < 100 for v in state["trainers"][0]["sae"].values())
    strict_json_lines(out / "train_log.jsonl")
    monkeypatch.setattr(train_module, "lr_at", normal_lr)

    # another change than the lr is refused, naming it
    with pytest.raises(ConfigError, match=r"other settings \(expansion differ\)"):
        train_sae(cache, out, TrainConfig(**{**cfg.__dict__, "expansion": 4}))
    # the advice works: a lower lr resumes from the kept checkpoint, and says so
    capsys.readouterr()
    sae_cfg = train_sae(cache, out, TrainConfig(**{**cfg.__dict__, "lr": 2e-4}))
    printed = capsys.readouterr().out
    assert f"resuming from {out / CHECKPOINT} at step 16" in printed
    assert "with lr changed from 0.0004 to 0.0002 at step 16" in printed
    assert sae_cfg["resumed_with_changes"] == [{"step": 16, "key": "lr", "from": 4e-4, "to": 2e-4}]
    assert {p.name for p in out.iterdir()} == OUTPUTS
    log = strict_json_lines(out / "train_log.jsonl")
    assert {r["lr"] for r in log if 16 <= r["step"] < 32} == {2e-4}  # the log records the rate of every step


def test_a_diverged_sae_is_never_saved_even_within_its_warmups(tmp_path, capsys):
    """The report: `saesuite train --lr 1e6` finished with exit 0 and explained variance -3e28."""
    cache, out = small_cache(tmp_path / "c"), tmp_path / "sae"
    # 100 steps, all within the default lr warm-up (65,536 samples = 1,024 steps)
    assert main(["train", str(cache), str(out), "--lr", "1e6", "--samples", "6400", "--batch-size", "64",
                 "--expansion", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "training diverged at step 100" in err and "No checkpoint was written" in err and "Traceback" not in err
    assert not (out / "sae_weights.safetensors").exists()
    strict_json_lines(out / "train_log.jsonl")


def test_a_healthy_run_is_never_stopped_and_the_guard_is_not_a_hyperparameter(tmp_path):
    cache = small_cache(tmp_path / "c")
    base = dict(expansion=2, batch_size=64, samples=64 * 60, checkpoint_every_steps=8, **SMALL)
    guarded = train_sae(cache, tmp_path / "a", TrainConfig(**base))
    unguarded = train_sae(cache, tmp_path / "b", TrainConfig(**base, divergence_max_relative_error=None))
    for name in OUTPUTS:  # the same bytes: the guard changes nothing of a run it does not stop
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "divergence_max_relative_error" not in guarded["training"] and guarded == unguarded


def test_the_train_log_stays_json_when_a_number_is_not_finite(tmp_path):
    trainer = Trainer(TrainConfig(expansion=2, **SMALL), tmp_path, 4, np.zeros(4), torch.device("cpu"))
    trainer.records = [{"step": 0, "loss": 2.5e27, "explained_variance": float("-inf"), "mse": float("nan")}]
    trainer.write_log()
    assert strict_json_lines(tmp_path / "train_log.jsonl") == [
        {"step": 0, "loss": 2.5e27, "explained_variance": None, "mse": None}]


# --- 3. recovery advice that works --------------------------------------------------------------


def test_cache_messages_name_the_bad_row_and_only_files_that_exist(tmp_path):
    from saesuite.cache.verify import verify_cache

    x = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    x[77, 2] = np.nan  # shard 1 holds rows 50..99
    cache = write_array_cache(tmp_path / "c", x, n_shards=2)
    with pytest.raises(CacheError) as raised:
        verify_cache(cache, finite=True)
    message = str(raised.value)
    assert "first in its row 27 (row 77 of the cache)" in message
    # a finished cache has no per-shard records any more: the advice names none
    assert f"delete the cache folder {cache} and rerun caching" in message and ".json" not in message
    (cache / "shard-00001.json").write_text("{}")  # while the shard's record is beside it, it alone is redone
    with pytest.raises(CacheError, match="delete it and shard-00001.json and rerun caching: only this shard"):
        verify_cache(cache, finite=True)


# --- 4. output paths are checked before the work -----------------------------------------------


@pytest.mark.parametrize("command", ["make-cifar10-fixture", "cache", "train", "evaluate", "compare"])
def test_every_subcommand_refuses_an_output_path_under_a_file_before_computing(command, tmp_path, capsys, monkeypatch):
    import saesuite.cache.writer
    import saesuite.compare.saes
    import saesuite.evaluate.evaluation
    import saesuite.data.fixture
    import saesuite.sae.train

    def computed(*args, **kwargs):
        raise AssertionError("computed before checking the output path")

    for module, name in ((saesuite.data.fixture, "make_cifar10_fixture"), (saesuite.cache.writer, "cache_activations"),
                         (saesuite.sae.train, "train_sae"), (saesuite.evaluate.evaluation, "evaluate_sae"),
                         (saesuite.compare.saes, "compare_saes")):
        monkeypatch.setattr(module, name, computed)
    (tmp_path / "a-file").write_text("")
    out = str(tmp_path / "a-file" / "out")
    missing = str(tmp_path / "missing")  # inputs are not looked at first either
    argv = {
        "make-cifar10-fixture": [out],
        "cache": [out, "--model", "tiny-RN", "--pretrained", "none", "--hook", "attnpool", "--dataset", "cifar10",
                  "--root", missing, "--split", "test"],
        "train": [missing, out],
        "evaluate": [missing, missing, out],
        "compare": [missing, missing, missing, missing, out],
    }[command]
    assert main([command, *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"saesuite {command}: error: output folder {out} cannot be created: {tmp_path / 'a-file'} is a file, not a folder\n"


def test_the_library_checks_the_output_folder_before_opening_its_inputs(tmp_path):
    from saesuite.compare.saes import compare_saes
    from saesuite.evaluate.evaluation import evaluate_sae

    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        evaluate_sae(tmp_path / "no-sae", tmp_path / "no-cache", tmp_path / "a-file" / "eval")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        compare_saes(tmp_path / "x", tmp_path / "x", tmp_path / "y", tmp_path / "y", tmp_path / "a-file" / "cmp")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cache", "o", "--model", "m", "--pretrained", "none", "--hook", "attnpool", "--dataset", "cifar10",
          "--root", "r", "--split", "test", "--shards", "0"], "argument --shards: must be >= 1; got 0"),
        (["cache", "o", "--model", "m", "--pretrained", "none", "--hook", "attnpool", "--dataset", "cifar10",
          "--root", "r", "--split", "test", "--max-bad-fraction", "1.5"], "argument --max-bad-fraction: must be >= 0 and <= 1"),
        (["train", "c", "o", "--lr", "0"], "argument --lr: must be > 0; got 0"),
        (["train", "c", "o", "--batch-size", "-3"], "argument --batch-size: must be >= 1; got -3"),
        (["train", "c", "o", "--samples", "many"], "argument --samples: 'many' is not an integer"),
        (["compare", "a", "b", "c", "d", "o", "--interval-level", "1"], "argument --interval-level: must be > 0 and < 1"),
        (["make-cifar10-fixture", "d", "--n", "0"], "argument --n: must be >= 1; got 0"),
    ],
)
def test_out_of_range_numbers_are_refused_by_argparse(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2 and message in capsys.readouterr().err


def test_an_os_error_is_one_line_with_its_path(tmp_path, capsys, monkeypatch):
    import saesuite.sae.train

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/cache/shard-00000.npy")

    monkeypatch.setattr(saesuite.sae.train, "train_sae", denied)
    assert main(["train", str(tmp_path / "c"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "saesuite train: error: Permission denied: /data/cache/shard-00000.npy\n"


def test_sae_files_get_the_usual_mode_and_no_temporary_file_is_left(tmp_path):
    train_sae(small_cache(tmp_path / "c"), tmp_path / "sae", TrainConfig(expansion=2, batch_size=64, samples=640, **SMALL))
    assert {p.name for p in (tmp_path / "sae").iterdir()} == OUTPUTS
    for name in OUTPUTS:
        assert (tmp_path / "sae" / name).stat().st_mode & 0o777 == default_file_mode()  # 0644 under umask 022


# --- 5. preflight in the workflow ---------------------------------------------------------------


def imagenet(root: Path, splits=("train", "val"), classes=True) -> dict:
    for split in splits:
        (root / split / "n01440764" if classes else root / split).mkdir(parents=True)
    return {"kind": "imagenet", "root": str(root), "train_split": "train", "eval_split": "val"}


def test_the_dataset_check(tmp_path):
    assert pf.dataset_problems(imagenet(tmp_path / "ok")) == []
    [missing] = pf.dataset_problems({**imagenet(tmp_path / "a"), "root": str(tmp_path / "nowhere")})
    assert missing.startswith(f"dataset.root: {tmp_path / 'nowhere'} is missing") and "train/<wnid>/*.JPEG" in missing
    [no_val] = pf.dataset_problems(imagenet(tmp_path / "b", splits=("train",)))
    assert f"ImageNet split 'val' not found: no folder {tmp_path / 'b' / 'val'}" in no_val
    cifar = {"kind": "cifar10", "root": str(tmp_path / "cifar"), "train_split": "train", "eval_split": "test"}
    (tmp_path / "cifar" / "cifar-10-batches-py").mkdir(parents=True)
    [lacks] = pf.dataset_problems(cifar)
    assert "lacks batches.meta, data_batch_1" in lacks and "dataset.download: true" in lacks
    assert pf.dataset_problems({**cifar, "download": True}) == []
    assert pf.dataset_problems({**cifar, "fixture": True, "root": str(tmp_path / "made-by-the-workflow")}) == []


def test_an_imagenet_split_without_class_folders_is_named(tmp_path):
    dataset = imagenet(tmp_path / "in", splits=("train",))
    (tmp_path / "in" / "val").mkdir()
    (tmp_path / "in" / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    [problem] = pf.dataset_problems(dataset)
    assert "ImageNet split 'val'" in problem and "has no class folders" in problem


def test_the_model_and_hook_check():
    known = pf.known_model_configs()
    assert pf.model_problems({"RN50": {"hook": "attnpool"}, "ViT-L-14": {"hook": "resid_cls:22"},
                              "tiny-ViT": {"hook": "mlp_hidden:-1"}}, known) == []
    [name] = pf.model_problems({"ViT-L-41": {"hook": "resid_cls:22"}}, known)
    assert name.startswith("models.ViT-L-41: open_clip does not know a model called 'ViT-L-41'. Did you mean ")
    assert "'ViT-L-14'" in name.split("Did you mean")[1].split("?")[0]
    [block] = pf.model_problems({"tiny-ViT": {"hook": "resid_cls:7"}}, known)
    assert block == "models.tiny-ViT.hook: hook resid_cls:7: 'tiny-ViT' has 4 blocks (indices 0..3, or -4..-1); block 7 does not exist"
    [site] = pf.model_problems({"tiny-RN": {"hook": "resid_cls:1"}}, known)
    assert "'tiny-RN' is a ResNet and has no transformer blocks; use 'attnpool'" in site


def test_the_model_names_are_those_open_clip_lists():
    import open_clip

    from saesuite.models.backbones import register_tiny_configs

    register_tiny_configs()
    assert set(pf.known_model_configs()) == set(open_clip.list_models())


def test_the_cuda_check_and_its_skip_under_a_cluster_executor(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = {"train": {"device": "cuda", "sweep": [{"name": "s", "device": "cuda:1"}]}, "evaluate": {"device": "cpu"}}
    [problem] = pf.device_problems(pf.configured_devices(config, planted=True))
    assert problem.startswith("train.device, train.sweep.s.device: cuda, cuda:1 asked for, but torch")
    assert "sees no CUDA GPU on this machine" in problem
    with pytest.raises(ConfigError, match="1 problem found before any job ran"):
        pf.preflight(config, planted=True, executor="local", env={})
    [note] = pf.preflight(config, planted=True, executor="slurm", env={})
    assert "not checking this machine for a CUDA GPU (train.device, train.sweep.s.device)" in note and "slurm" in note
    assert pf.preflight(config, planted=True, executor="local", env={pf.SKIP_ENV: "device"}) == []
    with pytest.raises(ConfigError, match="SAESUITE_PREFLIGHT_SKIP names gpu"):
        pf.preflight(config, planted=True, env={pf.SKIP_ENV: "gpu"})


def test_preflight_runs_only_when_jobs_are_planned():
    assert pf.runs_jobs(None) and pf.runs_jobs(SimpleNamespace(dryrun=True, unlock=False))
    assert not pf.runs_jobs(SimpleNamespace(unlock=True)) and not pf.runs_jobs(SimpleNamespace(summary=True))
    assert not pf.runs_jobs(SimpleNamespace(report="r.zip", report_after_run=False))
    assert pf.runs_jobs(SimpleNamespace(report="r.zip", report_after_run=True))


def smoke_config() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "smoke.yaml").read_text())


def rename_model(config, old, new):
    config["models"][new] = config["models"].pop(old)
    config["compare"] = {**config["compare"], **{k: new for k in ("a", "b") if config["compare"][k] == old}}
    if config["replication"]["model"] == old:
        config["replication"]["model"] = new


@pytest.mark.workflow
@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda c: (c.update(fixture=None), c["dataset"].update(fixture=False, root="data/nowhere")),
         "dataset.root: {workdir}/data/nowhere is missing; it must hold cifar-10-batches-py/"),
        (lambda c: rename_model(c, "tiny-ViT", "tiny-VIT"),
         "models.tiny-VIT: open_clip does not know a model called 'tiny-VIT'. Did you mean 'tiny-ViT'"),
        (lambda c: c["models"]["tiny-ViT"].update(hook="resid_cls:7"),
         "models.tiny-ViT.hook: hook resid_cls:7: 'tiny-ViT' has 4 blocks"),
    ],
    ids=["missing-dataset-root", "unknown-model", "unknown-hook"],
)
def test_a_dry_run_stops_before_any_job_with_one_clear_message(tmp_path, edit, needle):
    workdir = tmp_path / "workflow"
    config = smoke_config()
    edit(config)
    proc = dry_run_with(workdir, config)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert needle.format(workdir=workdir) in text, text
    assert "config/bad.yaml: 1 problem found before any job ran" in text
    assert "Job stats" not in text and "Traceback" not in text  # no job planned; the message, not a traceback
    assert len([line for line in text.splitlines() if line.strip()]) <= 10, text
    assert not (workdir / "results").exists()


HELPER_JOB = """
import sys
from saesuite.errors import CacheError
from saesuite.runlog import log_to
with log_to(sys.argv[1]):
    print("working")
    if sys.argv[2] == "suite":
        raise CacheError("results/smoke/cache/tiny-RN/test: shard shard-00001.npy is missing; rebuild it")
    raise KeyError("a bug")
"""


def test_a_job_error_reaches_the_user_as_the_suite_message_with_the_traceback_in_the_log(tmp_path):
    log = tmp_path / "logs" / "job.log"
    proc = subprocess.run([sys.executable, "-c", HELPER_JOB, str(log), "suite"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == ("saesuite error: results/smoke/cache/tiny-RN/test: shard shard-00001.npy is missing; "
                           f"rebuild it (traceback in {log})\n")
    assert "working" in log.read_text() and "Traceback (most recent call last)" in log.read_text()
    # a bug keeps its traceback on stderr too
    proc = subprocess.run([sys.executable, "-c", HELPER_JOB, str(log), "bug"], capture_output=True, text=True)
    assert proc.returncode == 1 and "KeyError: 'a bug'" in proc.stderr and "Traceback" in proc.stderr
