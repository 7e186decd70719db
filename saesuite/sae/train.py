"""Training SAEs from an activation cache: the seed's recipe and TopK, several at once.

The loop, in one screen (:func:`train_saes`):

1. Inputs are multiplied by one constant so their mean L2 norm is ``sqrt(d)``
   (each dimension then has mean square about 1, whatever the model's units); the
   scale goes into ``cfg.json`` and is folded back into the saved weights.
2. ``b_dec`` starts at the geometric median (or mean) of a sample of inputs;
   ``W_dec`` rows are random unit vectors and ``W_enc = c * W_dec.T``.
3. Step ``s`` reads the rows at global sample positions ``[s*B, (s+1)*B)`` of a
   stream of passes over the cache's usable rows (rows of unreadable images are
   skipped), each pass a fresh shuffle (:mod:`saesuite.sae.sampling`), prefetched in a
   background thread. Every SAE of a sweep sees the same batches.
4. Each SAE's :class:`saesuite.sae.trainer.Trainer` takes one step on the batch:
   ``mse`` (mean over batch and dimensions of ``(x_hat - x)^2``) plus, for ReLU,
   ``l1_coefficient * mean_b sum_i f_i ||W_dec[i]||``; for TopK, the AuxK loss on dead
   latents (:mod:`saesuite.sae.objectives`). Decoder rows stay at unit norm.
5. Adam; linear lr warm-up, linear decay over the last ``lr_decay_fraction``
   (:mod:`saesuite.sae.config`); linear L1 warm-up; gradient-norm clipping.
6. Dead latents (silent for ``dead_window_samples``) are resampled (ReLU) or
   trained by AuxK (TopK), see :mod:`saesuite.sae.dead`.
7. A checkpoint (weights, Adam state, dead-latent clocks, log) is written
   atomically every ``checkpoint_every_steps``; a rerun resumes from it and ends
   with the weights of an uninterrupted run.
8. Failure. A non-finite loss, or (after the warm-ups) a batch reconstructed worse than
   ``divergence_max_relative_error`` times its own energy (``sum ||x_hat - x||^2 /
   sum ||x||^2``: a finite divergence), stops training with :class:`TrainingError`.
   Steps are judged on the device and read every ``CHECK_EVERY_STEPS`` steps (a GPU never
   waits for the host in between), so training stops within that many steps of the failed one.
   A checkpoint is written, and the final SAE saved, only after the steps before it and the
   updated weights pass the same check (the final one also within the warm-ups), so the one
   kept is good; a rerun with a lower ``lr`` resumes from it (and says so).
   Every output folder is locked while training writes it (:mod:`saesuite.outputs`).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from saesuite.cache.reader import ActivationCache
from saesuite.device import resolve_device
from saesuite.errors import ConfigError, TrainingError
from saesuite.outputs import atomic_path, output_lock
from saesuite.sae.config import SHARED, TrainConfig
from saesuite.sae.model import save_sae
from saesuite.sae.sampling import SampleOrder, prefetch
from saesuite.sae.trainer import CHECK_EVERY_STEPS, Trainer

CHECKPOINT = "checkpoint.pt"
# What a rerun may change and still resume from a kept checkpoint (after a divergence: a lower lr).
RESUMABLE_CHANGES = ("lr",)


# Rows per float64 chunk of the initial statistics (4096 x d=1024: 32 MiB).
STATS_CHUNK_ROWS = 4096


def _chunks(x: np.ndarray, scale: float = 1.0):
    """``scale * x`` in float64, :data:`STATS_CHUNK_ROWS` rows at a time: the float64 copy of ``x`` is never whole."""
    for start in range(0, len(x), STATS_CHUNK_ROWS):
        yield x[start:start + STATS_CHUNK_ROWS].astype(np.float64) * scale


def _mean(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``mean_rows(scale * x)`` in float64, summed a chunk at a time."""
    return sum(c.sum(0) for c in _chunks(x, scale)) / len(x)


def geometric_median(x: np.ndarray, scale: float = 1.0, iters: int = 100, tol: float = 1e-7) -> np.ndarray:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to the rows of ``scale * x``
    (``x [n, d]`` of any float dtype). Computed in float64 a chunk of rows at a time, so beyond ``x`` it
    needs one chunk's memory, not the two ``[n, d]`` float64 copies of the vectorised form."""
    median = _mean(x, scale)
    for _ in range(iters):
        weighted, inverse = np.zeros_like(median), 0.0
        for c in _chunks(x, scale):
            dist = np.maximum(np.linalg.norm(c - median, axis=1), 1e-12)
            weighted += (c / dist[:, None]).sum(0)
            inverse += (1 / dist).sum()
        new = weighted / inverse
        if np.linalg.norm(new - median) <= tol * max(1.0, np.linalg.norm(median)):
            return new
        median = new
    return median


def init_stats(cache: ActivationCache, cfg: TrainConfig) -> tuple[float, np.ndarray]:
    """``(scale, b_dec0)``: the factor giving mean norm ``sqrt(d)`` and the initial ``b_dec`` (scaled units).

    The sample is held once, in float32 (``b_dec_init_samples x d``), gathered and reduced in chunks
    (float64 arithmetic), so these statistics need less memory than the training steps."""
    rng = np.random.default_rng([cfg.seed, 1])
    valid = cache.valid_indices()
    idx = np.sort(rng.choice(valid, size=min(cfg.b_dec_init_samples, len(valid)), replace=False))
    x = np.empty((len(idx), cache.d), dtype=np.float32)
    for start in range(0, len(idx), STATS_CHUNK_ROWS):
        x[start:start + STATS_CHUNK_ROWS] = cache.gather(idx[start:start + STATS_CHUNK_ROWS])
    mean_norm = np.concatenate([np.linalg.norm(c, axis=1) for c in _chunks(x)]).mean()
    if not np.isfinite(mean_norm) or mean_norm == 0:
        raise TrainingError(f"cache {cache.path} has mean row norm {mean_norm}; it cannot be trained on")
    scale = float(math.sqrt(cache.d) / mean_norm) if cfg.normalize_activations else 1.0
    b_dec = {"geometric_median": geometric_median, "mean": _mean, "zeros": lambda v, _: np.zeros(v.shape[1])}
    return scale, b_dec[cfg.b_dec_init](x, scale)


def _check_shared(configs: list[TrainConfig]) -> None:
    for name in SHARED:
        values = {getattr(c, name) for c in configs}
        if len(values) > 1:
            raise ConfigError(f"SAEs trained in one pass must share {name}; got {sorted(map(str, values))}")


def _fingerprint(cache: ActivationCache, configs: list[TrainConfig]) -> str:
    return json.dumps({"cache": [s["sha256"] for s in cache.manifest["shards"]],
                       "configs": [c.hyperparameters() for c in configs]}, sort_keys=True, default=str)


def _resumable_changes(state_path: Path, saved: str, current: str, outs: list[Path]) -> list[tuple[Path, str, object, object]]:
    """``(out_dir, key, old, new)`` of each setting that differs between a checkpoint's fingerprint and
    this run's, if all are :data:`RESUMABLE_CHANGES`; else a ConfigError naming what differs."""
    old, new = json.loads(saved), json.loads(current)
    if old["cache"] != new["cache"]:
        raise ConfigError(f"{state_path} belongs to a run on another cache (its shards' sha256 differ); "
                          "delete it to start afresh")
    if len(old["configs"]) != len(new["configs"]):
        raise ConfigError(f"{state_path} belongs to a run of {len(old['configs'])} SAEs, this one trains "
                          f"{len(new['configs'])}; delete it to start afresh")
    changes, other = [], set()
    for out, a, b in zip(outs, old["configs"], new["configs"]):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                changes.append((out, key, a.get(key), b.get(key)))
                if key not in RESUMABLE_CHANGES:
                    other.add(key)
    if other:
        raise ConfigError(
            f"{state_path} belongs to a run with other settings ({', '.join(sorted(other))} differ); restore them "
            f"to resume, or delete it to start afresh (only {', '.join(RESUMABLE_CHANGES)} may change on resuming)"
        )
    return changes


def _recovery_advice(state_path: Path, saved_step: int | None, cfg: TrainConfig) -> str:
    """What to do after training stopped: resume from the kept checkpoint with a lower lr, or start afresh."""
    if saved_step is not None and state_path.exists():
        return (
            f"The last good checkpoint (step {saved_step}) is kept in {state_path}. Lower the learning rate "
            f"(lr, now {cfg.lr:g}: the config's train.lr, or that of the sweep entry or replication; saesuite train "
            f"--lr) and rerun: training resumes from that checkpoint with the new rate and says so in its log. "
            f"To start afresh instead, delete {state_path}. "
            "If a lower rate does not help, check the cache for extreme values."
        )
    return (
        f"No checkpoint was written before it (one every {cfg.checkpoint_every_steps} steps), so training starts "
        f"afresh on a rerun: lower the learning rate (lr, now {cfg.lr:g}: the config's train.lr, or that of the "
        f"sweep entry or replication; saesuite train --lr) and rerun. "
        "If a lower rate does not help, check the cache for extreme values."
    )


@contextlib.contextmanager
def _cpu_threads_for(d: int, d_sae: int, device: torch.device):
    """One intra-op thread for small SAEs on CPU, where thread synchronisation costs more than the maths."""
    previous = torch.get_num_threads()
    if device.type == "cpu" and d * d_sae < 1 << 22:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_saes(
    cache_dir: str | Path,
    runs: list[tuple[str | Path, TrainConfig]],
    state_dir: str | Path | None = None,
    extra_cfg: dict | None = None,
) -> list[dict]:
    """Train one SAE per ``(out_dir, cfg)`` from one read of the cache; return their ``cfg.json`` dicts.

    The checkpoint lives in ``state_dir`` (default: the first run's ``out_dir``). Every output
    folder is locked for the run (a second run on one of them is refused, naming the holder).
    """
    cache = ActivationCache.open(cache_dir)
    configs = [cfg for _, cfg in runs]
    _check_shared(configs)
    base = configs[0]
    device = resolve_device(base.device)
    if base.dtype == "bfloat16" and device.type != "cuda":
        raise ConfigError("dtype bfloat16 (autocast) is for CUDA; use float32 on CPU")
    valid = cache.valid_indices()  # rows of unreadable images are zeros in the cache: never trained on
    if base.batch_size > len(valid):
        raise ConfigError(f"batch_size {base.batch_size} is larger than the cache ({len(valid)} usable rows)")
    folders = dict.fromkeys(Path(p) for p in [state_dir or runs[0][0], *(out for out, _ in runs)])
    with contextlib.ExitStack() as locks:
        for folder in folders:
            locks.enter_context(output_lock(folder))
        return _train_locked(cache, runs, configs, device, valid, Path(state_dir or runs[0][0]) / CHECKPOINT, extra_cfg)


def _train_locked(cache: ActivationCache, runs: list[tuple[str | Path, TrainConfig]], configs: list[TrainConfig],
                  device: torch.device, valid: np.ndarray, state_path: Path, extra_cfg: dict | None) -> list[dict]:
    """:func:`train_saes` once its output folders are locked."""
    base = configs[0]
    scale, b_dec = init_stats(cache, base)
    trainers = [Trainer(cfg, Path(out), cache.d, b_dec, device, cache, scale) for out, cfg in runs]
    fingerprint = _fingerprint(cache, configs)
    saved = _resume(state_path, trainers, fingerprint, device) if state_path.exists() else None
    start = saved or 0

    order = SampleOrder(len(valid), base.seed, base.shuffle, base.shuffle_block_rows, base.shuffle_window_blocks)

    def batch(step: int) -> torch.Tensor:
        rows = valid[order.rows(step * base.batch_size, (step + 1) * base.batch_size)]
        x = torch.from_numpy(cache.gather(rows))
        return (x.pin_memory() if device.type == "cuda" else x).to(device, non_blocking=True) * scale

    desc = f"train {len(trainers)} SAE{'s' if len(trainers) > 1 else ''}"
    widest = max(t.sae.d_sae for t in trainers)
    with _cpu_threads_for(cache.d, widest, device), tqdm(total=base.steps * base.batch_size, initial=start * base.batch_size, unit="sample",
              unit_scale=True, desc=desc) as bar:
        try:
            for step, x in zip(range(start, base.steps), prefetch(batch, range(start, base.steps))):
                for t in trainers:
                    t.step(x, step)
                checkpoint = (step + 1) % base.checkpoint_every_steps == 0 and step + 1 < base.steps
                if checkpoint or (step + 1) % CHECK_EVERY_STEPS == 0 or step + 1 == base.steps:
                    records = _check(trainers)
                    if records:
                        bar.set_postfix(loss=f"{records[-1]['loss']:.4g}", l0=f"{records[-1]['l0']:.1f}")
                        for t in trainers:
                            t.write_log()
                if checkpoint:
                    # only weights that pass the step's own check are kept: the checkpoint a rerun resumes from
                    for t in trainers:
                        failure = t.failure_of_weights(x, step + 1)
                        if failure:
                            raise t.stop(step + 1, failure)
                    _save_checkpoint(state_path, step + 1, trainers, fingerprint)
                    saved = step + 1
                bar.update(base.batch_size)
            for t in trainers:  # no diverged SAE is saved, even from a run shorter than its warm-ups
                failure = t.failure_of_weights(x, base.steps, final=True)
                if failure:
                    raise t.stop(base.steps, failure)
        except TrainingError as err:
            for t in trainers:  # every log keeps the steps before the failure
                t.take_records(before=getattr(err, "step", None))
                t.write_log()
            cfg = getattr(err, "cfg", base)
            raise TrainingError(f"{err}. {_recovery_advice(state_path, saved, cfg)}") from err

    out = []
    for t in trainers:
        t.write_log()
        sae_cfg = sae_config(t, cache, scale, extra_cfg)
        save_sae(t.sae.cpu(), t.out_dir, sae_cfg, scale=scale)
        out.append(sae_cfg)
    state_path.unlink(missing_ok=True)
    return out


def _check(trainers: list[Trainer]) -> list[dict]:
    """:meth:`Trainer.check` of every SAE of one pass: the TrainingError of the SAE that failed first (the
    steps before it stay in every log), or the first SAE's new log records."""
    failures = [(*failure, i) for i, t in enumerate(trainers) if (failure := t.first_failure())]
    if failures:
        step, message, i = min(failures, key=lambda f: (f[0], f[2]))
        raise trainers[i].stop(step, message)
    return [t.take_records() for t in trainers][0]


def _resume(state_path: Path, trainers: list[Trainer], fingerprint: str, device: torch.device) -> int:
    """Load the checkpoint at ``state_path`` into ``trainers``, recording any resumable change of
    settings (:func:`_resumable_changes`); return the step it was written at."""
    state = torch.load(state_path, map_location=device, weights_only=False)
    changes = []
    if state["fingerprint"] != fingerprint:
        changes = _resumable_changes(state_path, state["fingerprint"], fingerprint, [t.out_dir for t in trainers])
    start = state["step"]
    for t, s in zip(trainers, state["trainers"]):
        t.load_state(s)
    print(f"resuming from {state_path} at step {start} of {trainers[0].cfg.steps}")
    for out, key, old, new in changes:
        print(f"resuming {out} with {key} changed from {old} to {new} at step {start}: its first {start} steps "
              f"used {key} {old} (train_log.jsonl records the lr of every logged step)")
        trainer = next(t for t in trainers if t.out_dir == out)
        trainer.resumed_with_changes.append({"step": start, "key": key, "from": old, "to": new})
    return start


def _save_checkpoint(path: Path, step: int, trainers: list[Trainer], fingerprint: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"step": step, "fingerprint": fingerprint, "trainers": [t.state() for t in trainers]}, tmp)


def sae_config(t: Trainer, cache: ActivationCache, scale: float, extra: dict | None) -> dict:
    """``cfg.json``: what the SAE is, where it came from, and every training hyper-parameter.

    The top level uses SAELens's names (the variant's ``architecture`` and ``k``:
    :meth:`saesuite.sae.variants.Variant.cfg_fields`), so ``sae_lens.SAE.load_from_disk``
    opens the directory; ``training`` holds the full :class:`TrainConfig`.
    """
    cfg, manifest = t.cfg, cache.manifest
    return {
        "d_in": cache.d,
        "d_sae": t.sae.d_sae,
        **t.sae.variant.cfg_fields(),
        "apply_b_dec_to_input": True,  # encode(x) = act((x - b_dec) @ W_enc + b_enc)
        "normalize_activations": "none",  # the input scale is folded into the saved weights
        "normalisation_scale": scale,
        "dtype": "float32",
        "device": "cpu",
        "hook": manifest["hook"],
        "model": manifest["model"],
        "pretrained": manifest["pretrained"],
        "dataset": manifest["dataset"],
        "split": manifest["split"],
        "cache_rows": cache.n,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "recipe": cfg.recipe,
        "dead_latent_method_used": cfg.dead_method,
        "resampled_latents": t.dead.resampled,
        "training": {**cfg.hyperparameters(), "adam_betas": list(cfg.adam_betas)},
        "metadata": {"model_name": manifest["model"], "hook_name": manifest["hook"]},
        **({"resumed_with_changes": t.resumed_with_changes} if t.resumed_with_changes else {}),
        **(extra or {}),
    }


def train_sae(cache_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, extra_cfg: dict | None = None) -> dict:
    """Train one SAE on the cache at ``cache_dir`` and save it to ``out_dir``; return its ``cfg.json``."""
    return train_saes(cache_dir, [(out_dir, cfg)], extra_cfg=extra_cfg)[0]
