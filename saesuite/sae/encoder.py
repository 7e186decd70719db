"""The encoder's pre-activations ``pre = (x - b_dec) @ W_enc + b_enc`` and the backward pass each code needs.

A training step differentiates the pre-activations ``[B, F]`` of a batch in one of two ways
(:class:`Encoding`):

* densely, when the code has a gradient at every entry (ReLU): :class:`_Encode`;
* at chosen entries, when the code uses only ``indices [B, k]`` of each row (TopK's k largest,
  AuxK's dead latents): :class:`_EncodeAt`. The gradient of ``pre`` is then zero but for those
  ``B * k`` entries, so its backward sums ``B * k`` weighted input rows into the encoder's
  gradient instead of running the dense ``[d, B] @ [B, F]`` matmul over a gradient that is mostly
  zeros: the same terms, summed in another order, at ``k / F`` of the arithmetic (at the paper's
  shape, F = 16,384 and k = 64, that matmul was about a third of a TopK step).
"""

from __future__ import annotations

import torch
from torch import Tensor


class _Encode(torch.autograd.Function):
    """``(x - b_dec) @ W_enc + b_enc`` with a cheaper backward for ``b_dec``.

    Autograd would form the full ``[b, d]`` gradient of ``x - b_dec`` (a
    ``[b, F] @ [F, d]`` matmul) only to sum it over the batch for ``b_dec``;
    here ``grad_b_dec = -W_enc @ sum_b(grad)``, a matrix-vector product. The
    full input gradient is computed only when ``x`` itself needs one.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, b_dec, W_enc, b_enc):
        centred = x - b_dec
        ctx.save_for_backward(centred, W_enc)
        return torch.addmm(b_enc, centred, W_enc)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        centred, W_enc = ctx.saved_tensors
        grad_sum = grad.sum(0)
        grad_x = grad @ W_enc.T.to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_b_dec = -(W_enc @ grad_sum.to(W_enc.dtype)) if ctx.needs_input_grad[1] else None
        # computed as [F, d] and handed back transposed: the layout of the SAE's latent-major W_enc
        grad_W_enc = (grad.T @ centred.to(grad.dtype)).T.to(W_enc.dtype) if ctx.needs_input_grad[2] else None
        grad_b_enc = grad_sum.to(W_enc.dtype) if ctx.needs_input_grad[3] else None
        return grad_x, grad_b_dec, grad_W_enc, grad_b_enc


def weighted_row_sums(rows: Tensor, indices: Tensor, weights: Tensor, n: int) -> Tensor:
    """``out[j] = sum of weights[b, s] * rows[b] over the (b, s) with indices[b, s] == j``: ``[n, width]``
    from ``rows [B, width]``, ``indices`` and ``weights [B, k]``.

    This is the weight gradient of ``embedding_bag(indices, table, per_sample_weights=weights)`` for an
    output gradient ``rows``, so aten's kernel for it does the work: it sorts the indices and sums each
    output row once (rows in parallel on CPU, a deterministic segment sum on CUDA), with no ``[B * k,
    width]`` temporary. It is called directly because autograd would also run the bag's forward.
    """
    B, k = indices.shape
    device = indices.device
    return torch.ops.aten._embedding_bag_dense_backward(
        rows, indices.reshape(-1), torch.arange(B, device=device).repeat_interleave(k),
        torch.full((B,), k, device=device), torch.empty(0, dtype=torch.long, device=device), n,
        False, 0, weights.reshape(-1).to(rows.dtype), -1)  # no frequency scaling, mode 0 (sum), no padding index


class _EncodeAt(torch.autograd.Function):
    """``pre.gather(-1, indices)`` of the pre-activations ``pre`` computed from ``centred = x - b_dec``,
    differentiated as ``(x - b_dec) @ W_enc[:, indices] + b_enc[indices]``, through those entries alone.

    With ``g [B, k]`` the gradient and ``G [B, F]`` its dense scatter:
    ``grad_W_enc = centred.T @ G`` (column ``j``: the sum of ``g[b, s] * centred[b]`` over the
    entries that picked latent ``j``, :func:`weighted_row_sums`), ``grad_b_enc = sum_b G``,
    ``grad_b_dec = -W_enc @ grad_b_enc`` and ``grad_x = G @ W_enc.T``. Computed in float32.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, centred, pre, indices, x, b_dec, W_enc, b_enc):
        ctx.save_for_backward(centred, indices, W_enc)
        return pre.gather(-1, indices)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        centred, indices, W_enc = ctx.saved_tensors
        grad = grad.float()
        F = W_enc.shape[1]
        grad_b_enc = torch.zeros(F, device=grad.device).scatter_add_(0, indices.reshape(-1), grad.reshape(-1))
        grad_x = None
        if ctx.needs_input_grad[3]:
            grad_x = (grad.unsqueeze(-1) * W_enc.T.float()[indices]).sum(1).to(centred.dtype)
        grad_b_dec = -(W_enc @ grad_b_enc.to(W_enc.dtype)) if ctx.needs_input_grad[4] else None
        grad_W_enc = None
        if ctx.needs_input_grad[5]:  # [F, d] handed back transposed: the layout of the SAE's latent-major W_enc
            grad_W_enc = weighted_row_sums(centred.float(), indices, grad, F).T.to(W_enc.dtype)
        grad_b_enc = grad_b_enc.to(W_enc.dtype) if ctx.needs_input_grad[6] else None
        return None, None, None, grad_x, grad_b_dec, grad_W_enc, grad_b_enc


def sparse_backward_pays(d: int, F: int, k: int | None) -> bool:
    """Whether a code of at most ``k`` of ``F`` latents a row (None: any number) is better differentiated at
    its entries than densely: the code must be sparse (``16 k <= F``) and the dense ``[d, B] @ [B, F]``
    matmul large (``d F >= 2^20``). Below that, sorting the indices and summing scattered rows costs
    more than the matmul (at d = 64, F = 1,024, k = 64 the dense backward is about 3x faster, at
    d = 256, F = 4,096 the sparse one; ``benchmarks/bench_step_parts.py``)."""
    return k is not None and 16 * k <= F and d * F >= 1 << 20


class Encoding:
    """The pre-activations of one batch ``x [B, d]``, differentiated densely or at chosen entries.

    :attr:`pre` is the values (no gradient), computed once; :meth:`dense` is ``pre`` with a gradient at
    every entry, :meth:`at` the entries at ``indices [B, k]`` with a gradient through them alone (the
    module docstring) when ``sparse``, else gathered from :meth:`dense` (the dense backward is then paid
    for once, whatever a step gathers). Outside autograd (``torch.no_grad``) all are plain tensors.
    """

    def __init__(self, x: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, sparse: bool = False):
        self._inputs = (x, b_dec, W_enc, b_enc)
        self.sparse = sparse
        self._centred: Tensor | None = None
        self._pre: Tensor | None = None
        self._dense: Tensor | None = None

    @property
    def pre(self) -> Tensor:
        """``[B, F]`` the pre-activations, without a gradient."""
        if self._dense is not None or (not self.sparse and torch.is_grad_enabled()):
            return self.dense().detach()
        if self._pre is None:
            x, b_dec, W_enc, b_enc = self._inputs
            with torch.no_grad():
                self._centred = x - b_dec
                self._pre = torch.addmm(b_enc, self._centred, W_enc)
        return self._pre

    def dense(self) -> Tensor:
        """``[B, F]`` the pre-activations with a gradient at every entry."""
        if not torch.is_grad_enabled():
            return self.pre
        if self._dense is None:
            self._dense = _Encode.apply(*self._inputs)
        return self._dense

    def at(self, indices: Tensor) -> Tensor:
        """``[B, k]`` the pre-activations at ``indices [B, k]``, with a gradient through those entries."""
        if not torch.is_grad_enabled():
            return self.pre.gather(-1, indices)
        if self._dense is not None or not self.sparse:
            return self.dense().gather(-1, indices)
        return _EncodeAt.apply(self._centred, self.pre, indices, *self._inputs)
