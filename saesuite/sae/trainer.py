"""One SAE being trained: :class:`Trainer` and its optimiser step.

The step, on a batch ``x [B, d]`` already scaled (:func:`saesuite.sae.train.train_saes`):

1. the variant's forward pass (:meth:`saesuite.sae.variants.Variant.training_code`);
2. the loss: the sum of its terms (:mod:`saesuite.sae.objectives`): the reconstruction, the L1
   term if the variant has one (``l1_coefficient`` after its warm-up, times the code's L1 norm),
   and the dead-latent term (AuxK or ghost grads) when latents are dead
   (:class:`saesuite.sae.dead.DeadLatents`);
3. what judges the step (its loss; the batch's error and energy) and, every ``log_every`` steps (and
   the last), the numbers of a log record of :data:`LOG_KEYS` are kept on the device;
4. Adam on the gradient, with its component along each (unit) decoder row removed first (so the L1
   term cannot be cheated by shrinking ``f`` and growing ``W_dec``; with unit rows the norm
   weighting is exact) and its norm clipped; then the decoder rows back to unit norm;
5. the dead-latent clocks advance, and resampling runs when due.

A step never reads the device on the host, so a GPU runs ahead of Python. :meth:`Trainer.check`
reads what the steps since the last check kept, in one sync, and raises the
:class:`saesuite.errors.TrainingError` of the first one whose loss was not finite or whose batch
diverged; else the logged records join :attr:`Trainer.records` (``train_log.jsonl``). The training
loop checks every :data:`CHECK_EVERY_STEPS` steps and before every checkpoint, resampling and the
final save, so a failed step stops training at most that many steps later and no weights it left are kept.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from saesuite.cache.reader import ActivationCache
from saesuite.errors import TrainingError
from saesuite.outputs import atomic_path
from saesuite.sae import objectives
from saesuite.sae.config import TrainConfig, l1_at, lr_at
from saesuite.sae.dead import DeadLatents
from saesuite.sae.model import SAE
from saesuite.sae.objectives import L1, Reconstruction, Term
from saesuite.sae.variants import Code

# Steps between two checks of the steps' health and log (each a host sync on a GPU).
CHECK_EVERY_STEPS = 64
# train_log.jsonl's keys, in order. A loss term the SAE does not have (auxk, ghost) logs 0.0.
LOG_KEYS = ("step", "samples", "loss", "mse", "l1", "l0", "explained_variance", "dead", "lr", "l1_coefficient",
            "auxk", "ghost", "resampled")


def init_sae(d: int, cfg: TrainConfig, b_dec: np.ndarray) -> SAE:
    """A fresh SAE: random unit decoder rows, ``W_enc = c * W_dec.T`` (``c`` the variant's) or
    Kaiming-uniform, and ``b_dec`` given."""
    generator = torch.Generator().manual_seed(cfg.seed)
    sae = SAE(d, cfg.expansion * d, cfg.variant)
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(sae.d_sae, d, generator=generator))
        sae.normalize_decoder()
        if cfg.encoder_init == "kaiming_uniform":  # Fry 2024: W_enc [d, F] drawn on its own
            sae.W_enc.copy_(torch.nn.init.kaiming_uniform_(torch.empty(d, sae.d_sae), generator=generator))
        else:
            sae.W_enc.copy_(sae.W_dec.T * sae.variant.encoder_scale(d, sae.d_sae))
        sae.b_dec.copy_(torch.as_tensor(b_dec, dtype=torch.float32))
    return sae


class Trainer:
    """One SAE being trained: its model, optimiser, dead latents and log."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, d: int, b_dec: np.ndarray, device: torch.device,
                 cache: ActivationCache | None = None, scale: float = 1.0):
        self.cfg, self.out_dir, self.device = cfg, Path(out_dir), device
        self.sae = init_sae(d, cfg, b_dec).to(device)
        # the fused kernel (one pass per parameter) computes the same Adam update as the loop version
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=True)
        self.dead = DeadLatents(cfg, self.sae.d_sae, device, cache, scale)  # resampling draws (scaled) cache rows
        self.records: list[dict] = []
        self._unchecked: list[tuple[int, torch.Tensor]] = []  # (step, what check() judges it by), on the device
        self._unlogged: list[tuple[dict, list[tuple[str, bool]], torch.Tensor]] = []  # log records whose numbers are on the device
        self.resumed_with_changes: list[dict] = []  # settings changed at a resumption (a lower lr after a divergence)

    def state(self) -> dict:
        return {"sae": self.sae.state_dict(), "optimizer": self.optimizer.state_dict(), **self.dead.state(),
                "records": self.records, "resumed_with_changes": self.resumed_with_changes}

    def load_state(self, state: dict) -> None:
        self.sae.load_state_dict(state["sae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.dead.load_state(state)
        self.records = state["records"]
        self.resumed_with_changes = list(state.get("resumed_with_changes", []))

    def step(self, x: torch.Tensor, step: int) -> None:
        """One optimiser step on the batch ``x [B, d]`` (already scaled). Nothing is read on the host: what
        :meth:`check` judges and logs stays on the device until it is called."""
        cfg, sae = self.cfg, self.sae
        lr, l1_coef = lr_at(step, cfg), l1_at(step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self._autocast():
            enc = sae.encoding(x)
            out = sae.variant.training_code(enc, sae.W_dec, sae.b_dec)
            recon, terms, sparsity = self._code_terms(x, out, l1_coef)
            terms += self.dead.terms(sae, enc, x, out.x_hat, recon.per_element)
            loss = sum(term.loss for term in terms)
        self._watch(step, x, out, loss.detach(), recon.loss.detach(), sparsity.detach())
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            self._queue_record(step, lr, l1_coef, x, out, loss.detach(), sparsity.detach(), terms)
        if self.dead.resample_due(step):
            self.check()  # resampling reads the weights on the host: never those of a failed step
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        if cfg.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip_norm, foreach=True)
        self.optimizer.step()
        sae.normalize_decoder()
        self.dead.after_step(step, len(x), out.fired, sae, self.optimizer)

    def _watch(self, step: int, x: torch.Tensor, out: Code, loss: torch.Tensor, mse: torch.Tensor,
               sparsity: torch.Tensor) -> None:
        """Keep, on the device, what :meth:`check` judges step ``step`` by: its loss, mse and sparsity, and the
        batch's ``sum ||x_hat - x||^2`` and ``sum ||x||^2``."""
        with torch.no_grad():
            error, energy = (x - out.x_hat.float()).pow(2).sum(), x.float().pow(2).sum()
            self._unchecked.append((step, torch.stack([loss.float(), mse.float(), sparsity.float(), error, energy])))

    def _queue_record(self, step: int, lr: float, l1_coef: float, x: torch.Tensor, out: Code, loss: torch.Tensor,
                      sparsity: torch.Tensor, terms: list[Term]) -> None:
        """Keep step ``step``'s log record; its numbers stay on the device until :meth:`check` reads them."""
        on_device = {"loss": loss, **_code_metrics(x, out, sparsity), **self.dead.metrics()}
        for term in terms:
            on_device.update(term.metrics())
        host = {"step": step, "samples": (step + 1) * self.cfg.batch_size, "lr": lr, "l1_coefficient": float(l1_coef)}
        for key, value in list(on_device.items()):
            if not isinstance(value, torch.Tensor):
                host[key] = on_device.pop(key)
        # integer counts (dead latents) are logged as integers
        keys = [(key, not value.is_floating_point()) for key, value in on_device.items()]
        self._unlogged.append((host, keys, torch.stack([v.float() for v in on_device.values()])))

    def check(self) -> list[dict]:
        """Read what the steps since the last check left on the device (one host sync) and judge them: raise the
        TrainingError of the first step whose loss was not finite or whose batch diverged (:meth:`_failure`),
        keeping only the log records before it; else add the logged records to :attr:`records` and return them."""
        failure = self.first_failure()
        if failure:
            self.take_records(before=failure[0])
            raise self.stop(*failure)
        return self.take_records()

    def first_failure(self) -> tuple[int, str] | None:
        """``(step, message)`` of the first step since the last check whose loss was not finite or whose batch
        diverged, or None. Reads the device (one sync)."""
        unchecked, self._unchecked = self._unchecked, []
        if not unchecked:
            return None
        self.dead.look()
        for (step, _), (loss, mse, sparsity, error, energy) in zip(unchecked, torch.stack([v for _, v in unchecked]).tolist()):
            failure = self._failure(step, loss, error, energy, f"(mse={mse}, sparsity={sparsity})")
            if failure:
                return step, failure
        return None

    def take_records(self, before: int | None = None) -> list[dict]:
        """Add the queued log records (those of steps before ``before``, if given) to :attr:`records`, reading
        their numbers from the device, and return them."""
        queued, self._unlogged = self._unlogged, []
        queued = [r for r in queued if before is None or r[0]["step"] < before]
        if not queued:
            return []
        values = iter(torch.cat([v for _, _, v in queued]).tolist())
        new = []
        for host, keys, _ in queued:
            reported = {**host, **{key: round(value) if integer else value for (key, integer), value in zip(keys, values)}}
            new.append({key: reported.get(key, 0.0) for key in LOG_KEYS})
        self.records += new
        return new

    def _autocast(self) -> torch.autocast:
        """bf16 autocast when ``dtype`` asks for it, else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.dtype == "bfloat16")

    def _code_terms(self, x: torch.Tensor, out: Code, l1_coef: float) -> tuple[Reconstruction, list[Term], torch.Tensor]:
        """The reconstruction term, the loss terms of the code (the reconstruction, then L1 if the
        variant has it) and the code's L1 norm."""
        recon = Reconstruction.of(self.cfg.reconstruction, out.x_hat.float(), x)
        sparsity = objectives.l1(out.code.float())
        terms: list[Term] = [recon, L1.of(sparsity, l1_coef)] if self.sae.variant.l1_penalty else [recon]
        return recon, terms, sparsity

    def stop(self, step: int, message: str) -> TrainingError:
        """The error that stops training because of this SAE at ``step`` (it carries the step and the SAE's config)."""
        err = TrainingError(message)
        err.step, err.cfg = step, self.cfg
        return err

    def _failure(self, step: int, loss: float, error: float, energy: float, detail: str, final: bool = False) -> str | None:
        """Why training has failed at ``step`` (``step`` updates done), or None: a non-finite loss; or, after the
        warm-ups (or for the ``final`` weights, whenever the run ends), the batch's ``error = sum ||x_hat - x||^2``
        above ``divergence_max_relative_error`` times its ``energy = sum ||x||^2`` (a finite divergence)."""
        if not math.isfinite(loss):
            return f"{self.out_dir}: loss became {loss} at step {step} {detail}"
        limit = self.cfg.divergence_max_relative_error
        if limit is None or (step < self.cfg.warmup_steps and not final):
            return None
        if not energy > 0:
            return None  # an all-zero batch: no scale to judge by
        if error / energy <= limit:
            return None
        return (
            f"{self.out_dir}: training diverged at step {step}: the batch's reconstruction error sum ||x_hat - x||^2 "
            f"is {error / energy:.3g} times its energy sum ||x||^2, above divergence_max_relative_error = {limit:g} "
            f"(loss {loss:.4g})"
        )

    @torch.no_grad()
    def failure_of_weights(self, x: torch.Tensor, step: int, final: bool = False) -> str | None:
        """Why the current weights (``step`` updates done) must not be checkpointed, or saved when ``final``,
        judged on the batch ``x`` as :meth:`check` judges a step (a non-finite loss, a divergence; the final
        weights also when the run ended within its warm-ups), or None. Changes nothing."""
        with self._autocast():
            out = self.sae.variant.training_code(self.sae.encoding(x), self.sae.W_dec, self.sae.b_dec)
            _, terms, _ = self._code_terms(x, out, l1_at(step, self.cfg))
            loss = sum(term.loss for term in terms)
        loss, error, energy = torch.stack([loss.float(), (x - out.x_hat.float()).pow(2).sum(), x.float().pow(2).sum()]).tolist()
        return self._failure(step, loss, error, energy, f"(the weights after {step} updates)", final)

    def write_log(self) -> None:
        """``train_log.jsonl``: one JSON object a line; a non-finite number is written as null."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out_dir / "train_log.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(_finite(r), allow_nan=False) + "\n" for r in self.records))


@torch.no_grad()
def _code_metrics(x: torch.Tensor, out: Code, sparsity: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the log records of the code (scalar tensors): its L1 norm, L0 and the batch's explained variance."""
    resid = (x - out.x_hat.float()).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    return {"l1": sparsity, "l0": (out.code > 0).sum(1).float().mean(), "explained_variance": 1 - resid / total}


def _finite(record: dict) -> dict:
    """``record`` with NaN and +-inf numbers replaced by None (JSON has no such numbers)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
