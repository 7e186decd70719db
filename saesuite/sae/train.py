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
4. Loss: ``mse`` (mean over batch and dimensions of ``(x_hat - x)^2``) plus, for
   ReLU, ``l1_coefficient * mean_b sum_i f_i ||W_dec[i]||``; for TopK, the AuxK
   loss on dead latents. Decoder rows are renormalised to unit norm after each
   step and the gradient component along them is removed first (so the L1 term
   cannot be cheated by shrinking ``f`` and growing ``W_dec``; with unit rows the
   norm weighting is exact and costs one ``[F, d]`` norm).
5. Adam; linear lr warm-up, linear decay over the last ``lr_decay_fraction``;
   linear L1 warm-up; gradient-norm clipping.
6. Dead latents (silent for ``dead_window_samples``) are resampled (ReLU) or
   trained by AuxK (TopK), see :mod:`saesuite.sae.dead`.
7. A checkpoint (weights, Adam state, dead-latent clocks, log) is written
   atomically every ``checkpoint_every_steps``; a rerun resumes from it and ends
   with the weights of an uninterrupted run.
8. Failure. A non-finite loss, or (after the warm-ups) a batch reconstructed worse than
   ``divergence_max_relative_error`` times its own energy (``sum ||x_hat - x||^2 /
   sum ||x||^2``: a finite divergence), stops training with :class:`TrainingError`.
   A checkpoint is written, and the final SAE saved, only after the updated weights pass
   the same check (the final one also within the warm-ups), so the one kept is good; a
   rerun with a lower ``lr`` resumes from it (and says so).
   Every output folder is locked while training writes it (:mod:`saesuite.outputs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from saesuite.cache.cache import ActivationCache, resolve_device
from saesuite.sae.dead import auxk_loss, resample_dead
from saesuite.errors import ConfigError, TrainingError
from saesuite.sae import objectives
from saesuite.outputs import atomic_path, output_lock
from saesuite.sae.objectives import RECONSTRUCTIONS
from saesuite.sae.recipes import recipe_values
from saesuite.sae.model import SAE, save_sae
from saesuite.sae.sampling import SampleOrder, prefetch

CHECKPOINT = "checkpoint.pt"
SAELENS_ARCHITECTURE = {"relu": "standard", "topk": "topk"}
DEAD_METHODS = ("auto", "none", "resample", "auxk", "ghost_grads")
B_DEC_INITS = ("geometric_median", "mean", "zeros")
ENCODER_INITS = ("scaled_transpose", "kaiming_uniform")
# Options that define the batch stream: every SAE trained in one pass must share them.
SHARED = ("batch_size", "samples", "seed", "device", "dtype", "shuffle", "shuffle_block_rows",
          "shuffle_window_blocks", "normalize_activations", "b_dec_init", "b_dec_init_samples",
          "checkpoint_every_steps", "log_every")
# Run guards, not hyper-parameters: a run they do not stop ends with the same weights whatever
# their values, so they are left out of cfg.json and of the checkpoint's fingerprint.
GUARDS = ("divergence_max_relative_error",)
# What a rerun may change and still resume from a kept checkpoint (after a divergence: a lower lr).
RESUMABLE_CHANGES = ("lr",)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; defaults are the paper's (the seed's recipe)."""

    recipe: str = "modern"  # a name of saesuite.sae.recipes.RECIPES: the values below it changes
    architecture: str = "relu"
    expansion: int = 16
    k: int | None = None
    l1_coefficient: float = 8e-5
    reconstruction: str = "mse"
    encoder_init: str = "scaled_transpose"
    lr: float = 4e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 1024
    samples: int = 2_621_440
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    normalize_activations: bool = True
    b_dec_init: str = "geometric_median"
    b_dec_init_samples: int = 65_536
    lr_warmup_samples: int = 65_536
    lr_decay_fraction: float = 0.2
    l1_warmup_samples: int = 131_072
    grad_clip_norm: float | None = 1.0
    dead_window_samples: int = 262_144
    dead_latent_method: str = "auto"
    resample_every_samples: int = 524_288
    resample_until_fraction: float = 0.6
    resample_pool_samples: int = 65_536
    auxk_k: int | None = None
    auxk_coefficient: float = 1 / 32
    shuffle: str = "rows"
    shuffle_block_rows: int = 4096
    shuffle_window_blocks: int = 64
    checkpoint_every_steps: int = 256
    log_every: int = 10
    # stop when, after the warm-ups, sum ||x_hat - x||^2 / sum ||x||^2 over a batch exceeds this
    # (a healthy SAE stays near or below 1; None: never)
    divergence_max_relative_error: float | None = 1000.0

    def __post_init__(self):
        if self.architecture not in ("relu", "topk"):
            raise ConfigError(f"architecture {self.architecture!r} is not known; choose relu or topk")
        if self.architecture == "topk" and not self.k:
            raise ConfigError("architecture topk needs k (active latents per input)")
        if self.dead_latent_method not in DEAD_METHODS:
            raise ConfigError(f"dead_latent_method {self.dead_latent_method!r}: choose one of {', '.join(DEAD_METHODS)}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ConfigError(f"reconstruction {self.reconstruction!r}: choose one of {', '.join(RECONSTRUCTIONS)}")
        if self.encoder_init not in ENCODER_INITS:
            raise ConfigError(f"encoder_init {self.encoder_init!r}: choose one of {', '.join(ENCODER_INITS)}")
        if self.b_dec_init not in B_DEC_INITS:
            raise ConfigError(f"b_dec_init {self.b_dec_init!r}: choose one of {', '.join(B_DEC_INITS)}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"dtype {self.dtype!r}: choose float32 or bfloat16 (bf16 autocast, CUDA only)")
        if min(self.batch_size, self.samples, self.expansion) < 1:
            raise ConfigError("batch_size, samples and expansion must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive; got {self.lr}")
        if self.divergence_max_relative_error is not None and not self.divergence_max_relative_error > 0:
            raise ConfigError(f"divergence_max_relative_error must be positive or null; got {self.divergence_max_relative_error}")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The recipe's values (``values["recipe"]``, default ``modern``), then ``values`` over them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        values = {**recipe_values(values.get("recipe", "modern")), **values}
        if "adam_betas" in values:
            values["adam_betas"] = tuple(values["adam_betas"])
        return cls(**values)

    @property
    def steps(self) -> int:
        return math.ceil(self.samples / self.batch_size)

    @property
    def warmup_steps(self) -> int:
        """Steps of the lr and L1 warm-ups; the divergence check starts after them."""
        return max(self.lr_warmup_samples, self.l1_warmup_samples) // self.batch_size

    def hyperparameters(self) -> dict:
        """Every option but the run guards (:data:`GUARDS`): what ``cfg.json`` records."""
        return {k: v for k, v in asdict(self).items() if k not in GUARDS}

    @property
    def dead_method(self) -> str:
        if self.dead_latent_method != "auto":
            return self.dead_latent_method
        return "auxk" if self.architecture == "topk" else "resample"


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step``: linear warm-up, flat, linear decay to 0 over the last fraction."""
    warm = max(1, cfg.lr_warmup_samples // cfg.batch_size)
    total = cfg.steps
    decay_start = int(total * (1 - cfg.lr_decay_fraction))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if step >= decay_start and total > decay_start:
        return cfg.lr * (total - step) / (total - decay_start)
    return cfg.lr


def l1_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, cfg.l1_warmup_samples // cfg.batch_size)
    return cfg.l1_coefficient * min(1.0, (step + 1) / warm)


def geometric_median(x: np.ndarray, iters: int = 100, tol: float = 1e-7) -> np.ndarray:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to the rows of ``x [n, d]``."""
    median = x.mean(axis=0)
    for _ in range(iters):
        dist = np.maximum(np.linalg.norm(x - median, axis=1), 1e-12)
        new = (x / dist[:, None]).sum(0) / (1 / dist).sum()
        if np.linalg.norm(new - median) <= tol * max(1.0, np.linalg.norm(median)):
            return new
        median = new
    return median


def init_stats(cache: ActivationCache, cfg: TrainConfig) -> tuple[float, np.ndarray]:
    """``(scale, b_dec0)``: the factor giving mean norm ``sqrt(d)`` and the initial ``b_dec`` (scaled units)."""
    rng = np.random.default_rng([cfg.seed, 1])
    valid = cache.valid_indices()
    idx = np.sort(rng.choice(valid, size=min(cfg.b_dec_init_samples, len(valid)), replace=False))
    x = cache.gather(idx).astype(np.float64)
    mean_norm = np.linalg.norm(x, axis=1).mean()
    if not np.isfinite(mean_norm) or mean_norm == 0:
        raise TrainingError(f"cache {cache.path} has mean row norm {mean_norm}; it cannot be trained on")
    scale = float(math.sqrt(cache.d) / mean_norm) if cfg.normalize_activations else 1.0
    x *= scale
    b_dec = {"geometric_median": geometric_median, "mean": lambda v: v.mean(0), "zeros": lambda v: np.zeros(v.shape[1])}
    return scale, b_dec[cfg.b_dec_init](x)


def init_sae(d: int, cfg: TrainConfig, b_dec: np.ndarray) -> SAE:
    generator = torch.Generator().manual_seed(cfg.seed)
    sae = SAE(d, cfg.expansion * d, cfg.architecture, cfg.k)
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(sae.d_sae, d, generator=generator))
        sae.normalize_decoder()
        if cfg.encoder_init == "kaiming_uniform":  # Fry 2024: W_enc [d, F] drawn on its own
            torch.nn.init.kaiming_uniform_(sae.W_enc, generator=generator)
        else:
            # W_enc = c * W_dec.T. ReLU: for random unit rows sum_i relu(w_i.v) w_i is about F/(2d) v, so
            # c = 2d/F makes the first reconstruction of a centred input about its own size. TopK: c = 1
            # (the k best-aligned rows reconstruct a part of v), as in Gao et al.
            sae.W_enc.copy_(sae.W_dec.T * (2 * d / sae.d_sae if cfg.architecture == "relu" else 1.0))
        sae.b_dec.copy_(torch.as_tensor(b_dec, dtype=torch.float32))
    return sae


class Trainer:
    """One SAE being trained: its model, optimiser, dead-latent clocks and log."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, d: int, b_dec: np.ndarray, device: torch.device,
                 cache: ActivationCache | None = None, scale: float = 1.0):
        self.cfg, self.out_dir, self.device = cfg, Path(out_dir), device
        self.cache, self.scale = cache, scale  # resampling draws (scaled) inputs from the cache
        self.sae = init_sae(d, cfg, b_dec).to(device)
        # the fused kernel (one pass per parameter) computes the same Adam update as the loop version
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=True)
        self.since_fired = torch.zeros(self.sae.d_sae, dtype=torch.long, device=device)
        self.records: list[dict] = []
        self.resampled = 0
        self.resumed_with_changes: list[dict] = []  # settings changed at a resumption (a lower lr after a divergence)

    def state(self) -> dict:
        return {"sae": self.sae.state_dict(), "optimizer": self.optimizer.state_dict(),
                "since_fired": self.since_fired, "records": self.records, "resampled": self.resampled,
                "resumed_with_changes": self.resumed_with_changes}

    def load_state(self, state: dict) -> None:
        self.sae.load_state_dict(state["sae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.since_fired = state["since_fired"].to(self.device)
        self.records, self.resampled = state["records"], state["resampled"]
        self.resumed_with_changes = list(state.get("resumed_with_changes", []))

    def dead_mask(self) -> torch.Tensor:
        return self.since_fired >= self.cfg.dead_window_samples

    def step(self, x: torch.Tensor, step: int) -> dict | None:
        """One optimiser step on the batch ``x [B, d]`` (already scaled); returns the log record if logged."""
        cfg, sae = self.cfg, self.sae
        lr, l1_coef = lr_at(step, cfg), l1_at(step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")
        with autocast:
            pre = sae.pre_acts(x)
            x_hat, code, active = self._forward(pre)
            recon = RECONSTRUCTIONS[cfg.reconstruction](x_hat.float(), x)
            sparsity = objectives.l1(code.float())
            terms = {"mse": recon.mean()}
            if cfg.architecture == "relu":
                terms["l1"] = l1_coef * sparsity
            dead = self.dead_mask()
            if cfg.dead_method == "auxk" and bool(dead.any()):
                terms["auxk"] = cfg.auxk_coefficient * auxk_loss(
                    sae, pre, x - x_hat.detach().float(), dead, cfg.auxk_k or x.shape[1] // 2)
            if cfg.dead_method == "ghost_grads" and bool(dead.any()):
                terms["ghost"] = objectives.ghost_grads_loss(pre[:, dead].float(), sae.W_dec[dead], x - x_hat.float(), recon)
            loss = sum(terms.values())
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise self.stop(
                f"{self.out_dir}: loss became {loss_value} at step {step} (mse={terms['mse'].item()}, "
                f"sparsity={sparsity.item()})"
            )
        diverged = self._diverged(x, x_hat, loss_value, step)
        if diverged:
            raise self.stop(diverged)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        if cfg.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip_norm, foreach=True)
        self.optimizer.step()
        sae.normalize_decoder()
        self.since_fired.add_(len(x)).masked_fill_(active, 0)
        if cfg.dead_method == "resample" and self._resample_due(step):
            self.resampled += resample_dead(self, step)
        if step % cfg.log_every and step != cfg.steps - 1:
            return None
        with torch.no_grad():
            resid = (x - x_hat.float()).pow(2).sum()
            total = (x - x.mean(0)).pow(2).sum()
        record = {
            "step": step, "samples": (step + 1) * cfg.batch_size, "loss": loss.item(), "mse": terms["mse"].item(),
            "l1": sparsity.item(), "l0": (code > 0).sum(1).float().mean().item(), "explained_variance": (1 - resid / total).item(),
            "dead": int(self.dead_mask().sum()), "lr": lr, "l1_coefficient": float(l1_coef),
            "auxk": float(terms.get("auxk", torch.zeros(())).detach()), "ghost": float(terms.get("ghost", torch.zeros(())).detach()), "resampled": self.resampled,
        }
        self.records.append(record)
        return record

    def stop(self, message: str) -> TrainingError:
        """The error that stops training because of this SAE (it carries the SAE's config)."""
        err = TrainingError(message)
        err.cfg = self.cfg
        return err

    def _diverged(self, x: torch.Tensor, x_hat: torch.Tensor, loss_value: float, step: int,
                  final: bool = False) -> str | None:
        """Why training has diverged at ``step`` although the loss is finite, or None: after the warm-ups
        (or for the ``final`` weights, whenever the run ends), the batch's ``sum ||x_hat - x||^2`` above
        ``divergence_max_relative_error`` times ``sum ||x||^2``."""
        limit = self.cfg.divergence_max_relative_error
        if limit is None or (step < self.cfg.warmup_steps and not final):
            return None
        with torch.no_grad():
            error, energy = torch.stack([(x - x_hat.float()).pow(2).sum(), x.float().pow(2).sum()]).tolist()
        if not energy > 0:
            return None  # an all-zero batch: no scale to judge by
        if error / energy <= limit:
            return None
        return (
            f"{self.out_dir}: training diverged at step {step}: the batch's reconstruction error sum ||x_hat - x||^2 "
            f"is {error / energy:.3g} times its energy sum ||x||^2, above divergence_max_relative_error = {limit:g} "
            f"(loss {loss_value:.4g})"
        )

    @torch.no_grad()
    def failure_of_weights(self, x: torch.Tensor, step: int, final: bool = False) -> str | None:
        """Why the current weights (``step`` updates done) must not be checkpointed, or saved when ``final``,
        judged on the batch ``x`` as :meth:`step` judges a batch (a non-finite loss, a divergence; the
        final weights also when the run ended within its warm-ups), or None. Changes nothing."""
        cfg = self.cfg
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")
        with autocast:
            x_hat, code, _ = self._forward(self.sae.pre_acts(x))
            loss = RECONSTRUCTIONS[cfg.reconstruction](x_hat.float(), x).mean()
            if cfg.architecture == "relu":
                loss = loss + l1_at(step, cfg) * objectives.l1(code.float())
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            return f"{self.out_dir}: loss became {loss_value} at step {step} (the weights after {step} updates)"
        return self._diverged(x, x_hat, loss_value, step, final)

    def _forward(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_hat [B, d], code, active [F])`` from the pre-activations: the code is ``f [B, F]``
        (ReLU) or TopK's values ``[B, k]``, decoded sparsely; ``active`` marks latents that fired."""
        sae = self.sae
        if self.cfg.architecture == "topk":
            values, indices = sae.topk_code(pre)
            active = torch.zeros(sae.d_sae, dtype=torch.bool, device=pre.device)
            active[indices[values > 0]] = True
            return sae.decode_sparse(values, indices) + sae.b_dec, values, active
        f = torch.relu(pre)
        return torch.addmm(sae.b_dec, f, sae.W_dec), f, f.amax(0) > 0

    def _resample_due(self, step: int) -> bool:
        every = max(1, self.cfg.resample_every_samples // self.cfg.batch_size)
        return (step + 1) % every == 0 and step < self.cfg.resample_until_fraction * self.cfg.steps

    def write_log(self) -> None:
        """``train_log.jsonl``: one JSON object a line; a non-finite number is written as null."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out_dir / "train_log.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(_finite(r), allow_nan=False) + "\n" for r in self.records))


def _finite(record: dict) -> dict:
    """``record`` with NaN and +-inf numbers replaced by None (JSON has no such numbers)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


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
    start, saved = 0, None
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        changes = []
        if state["fingerprint"] != fingerprint:
            changes = _resumable_changes(state_path, state["fingerprint"], fingerprint, [t.out_dir for t in trainers])
        start = saved = state["step"]
        for t, s in zip(trainers, state["trainers"]):
            t.load_state(s)
        print(f"resuming from {state_path} at step {start} of {base.steps}")
        for out, key, old, new in changes:
            print(f"resuming {out} with {key} changed from {old} to {new} at step {start}: its first {start} steps "
                  f"used {key} {old} (train_log.jsonl records the lr of every logged step)")
            trainer = next(t for t in trainers if t.out_dir == out)
            trainer.resumed_with_changes.append({"step": start, "key": key, "from": old, "to": new})

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
                records = [t.step(x, step) for t in trainers]
                if records[0] is not None:
                    bar.set_postfix(loss=f"{records[0]['loss']:.4g}", l0=f"{records[0]['l0']:.1f}")
                    for t in trainers:
                        t.write_log()
                if (step + 1) % base.checkpoint_every_steps == 0 and step + 1 < base.steps:
                    # only weights that pass the step's own check are kept: the checkpoint a rerun resumes from
                    for t in trainers:
                        failure = t.failure_of_weights(x, step + 1)
                        if failure:
                            raise t.stop(failure)
                    _save_checkpoint(state_path, step + 1, trainers, fingerprint)
                    saved = step + 1
                bar.update(base.batch_size)
            for t in trainers:  # no diverged SAE is saved, even from a run shorter than its warm-ups
                failure = t.failure_of_weights(x, base.steps, final=True)
                if failure:
                    raise t.stop(failure)
        except TrainingError as err:
            for t in trainers:
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


def _save_checkpoint(path: Path, step: int, trainers: list[Trainer], fingerprint: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"step": step, "fingerprint": fingerprint, "trainers": [t.state() for t in trainers]}, tmp)


def sae_config(t: Trainer, cache: ActivationCache, scale: float, extra: dict | None) -> dict:
    """``cfg.json``: what the SAE is, where it came from, and every training hyper-parameter.

    The top level uses SAELens's names (``architecture`` is ``standard`` for the
    ReLU SAE, as SAELens calls it, or ``topk``), so ``sae_lens.SAE.load_from_disk``
    opens the directory; ``training`` holds the full :class:`TrainConfig`.
    """
    cfg, manifest = t.cfg, cache.manifest
    return {
        "d_in": cache.d,
        "d_sae": t.sae.d_sae,
        "architecture": SAELENS_ARCHITECTURE[cfg.architecture],
        "k": cfg.k,
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
        "resampled_latents": t.resampled,
        "training": {**cfg.hyperparameters(), "adam_betas": list(cfg.adam_betas)},
        "metadata": {"model_name": manifest["model"], "hook_name": manifest["hook"]},
        **({"resumed_with_changes": t.resumed_with_changes} if t.resumed_with_changes else {}),
        **(extra or {}),
    }


def train_sae(cache_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, extra_cfg: dict | None = None) -> dict:
    """Train one SAE on the cache at ``cache_dir`` and save it to ``out_dir``; return its ``cfg.json``."""
    return train_saes(cache_dir, [(out_dir, cfg)], extra_cfg=extra_cfg)[0]
