"""One SAE being trained: :class:`Trainer` and its optimiser step.

The step, on a batch ``x [B, d]`` already scaled (:func:`saesuite.sae.train.train_saes`):

1. the variant's forward pass (:meth:`saesuite.sae.variants.Variant.training_code`);
2. the loss: the sum of its terms (:mod:`saesuite.sae.objectives`): the reconstruction, the L1
   term if the variant has one (``l1_coefficient`` after its warm-up, times the code's L1 norm),
   and the dead-latent term (AuxK or ghost grads) when latents are dead
   (:class:`saesuite.sae.dead.DeadLatents`);
3. a non-finite loss or a divergence stops training (:class:`saesuite.errors.TrainingError`);
4. Adam on the gradient, with its component along each (unit) decoder row removed first (so the L1
   term cannot be cheated by shrinking ``f`` and growing ``W_dec``; with unit rows the norm
   weighting is exact) and its norm clipped; then the decoder rows back to unit norm;
5. the dead-latent clocks advance, and resampling runs when due;
6. every ``log_every`` steps (and the last) a record of :data:`LOG_KEYS` joins ``train_log.jsonl``.
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
            torch.nn.init.kaiming_uniform_(sae.W_enc, generator=generator)
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

    def step(self, x: torch.Tensor, step: int) -> dict | None:
        """One optimiser step on the batch ``x [B, d]`` (already scaled); returns the log record if logged."""
        cfg, sae = self.cfg, self.sae
        lr, l1_coef = lr_at(step, cfg), l1_at(step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self._autocast():
            pre = sae.pre_acts(x)
            out = sae.variant.training_code(pre, sae.W_dec, sae.b_dec)
            recon, terms, sparsity = self._code_terms(x, out, l1_coef)
            terms += self.dead.terms(sae, pre, x, out.x_hat, recon.per_element)
            loss = sum(term.loss for term in terms)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise self.stop(f"{self.out_dir}: loss became {loss_value} at step {step} "
                            f"(mse={recon.loss.item()}, sparsity={sparsity.item()})")
        diverged = self._diverged(x, out.x_hat, loss_value, step)
        if diverged:
            raise self.stop(diverged)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        if cfg.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip_norm, foreach=True)
        self.optimizer.step()
        sae.normalize_decoder()
        self.dead.after_step(step, len(x), out.fired, sae, self.optimizer)
        if step % cfg.log_every and step != cfg.steps - 1:
            return None
        reported = {"step": step, "samples": (step + 1) * cfg.batch_size, "loss": loss.item(), "lr": lr,
                    "l1_coefficient": float(l1_coef), **_code_metrics(x, out, sparsity), **self.dead.metrics()}
        for term in terms:
            reported.update(term.metrics())
        record = {key: reported.get(key, 0.0) for key in LOG_KEYS}
        self.records.append(record)
        return record

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
        with self._autocast():
            out = self.sae.variant.training_code(self.sae.pre_acts(x), self.sae.W_dec, self.sae.b_dec)
            _, terms, _ = self._code_terms(x, out, l1_at(step, self.cfg))
            loss_value = sum(term.loss for term in terms).item()
        if not math.isfinite(loss_value):
            return f"{self.out_dir}: loss became {loss_value} at step {step} (the weights after {step} updates)"
        return self._diverged(x, out.x_hat, loss_value, step, final)

    def write_log(self) -> None:
        """``train_log.jsonl``: one JSON object a line; a non-finite number is written as null."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out_dir / "train_log.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(_finite(r), allow_nan=False) + "\n" for r in self.records))


@torch.no_grad()
def _code_metrics(x: torch.Tensor, out: Code, sparsity: torch.Tensor) -> dict[str, float]:
    """What the log records of the code: its L1 norm, L0 and the batch's explained variance."""
    resid = (x - out.x_hat.float()).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    return {"l1": sparsity.item(), "l0": (out.code > 0).sum(1).float().mean().item(),
            "explained_variance": (1 - resid / total).item()}


def _finite(record: dict) -> dict:
    """``record`` with NaN and +-inf numbers replaced by None (JSON has no such numbers)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
