"""The one mask convention of the grounding stage, and a row logsumexp that is fast on masked rows.

Boolean masks are ``True`` where an entry is real and ``False`` where it is padding, everywhere.
Masked logits are filled with :data:`MASKED_LOGIT`, a finite stand-in for ``-inf``: a softmax row
that is all padding then stays finite (uniform) instead of NaN, and ``exp(MASKED_LOGIT)`` is exactly
0 in float32 and bfloat16 next to any real logit.

:func:`logsumexp` exists because of that convention. On x86 CPUs the vectorised ``exp`` leaves its
fast path for arguments whose result underflows, so a ``torch.logsumexp`` over rows that are mostly
:data:`MASKED_LOGIT` (ESTA's positives, LRCA's local windows) runs 5-15x slower than over real
logits (measured on the 2-core VM, docs/benchmarks.md). Terms below ``exp(UNDERFLOW)`` of a row's
largest term cannot change a float32 sum (``exp(-50)`` is 2e-22, far under float32's 6e-8
resolution, even summed over thousands of entries), so :func:`logsumexp` never evaluates them.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MASKED_LOGIT", "UNDERFLOW", "log_softmax", "logsumexp"]

MASKED_LOGIT = -1e4
UNDERFLOW = -50.0
"""Shifted logits (``x - max``) below this contribute nothing to :func:`logsumexp` (their true share
is under 2e-22 of the row's sum) and get no gradient."""


class _RowLogSumExp(torch.autograd.Function):
    """logsumexp over the last dim, skipping terms below ``exp(UNDERFLOW)`` of the row's largest."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        top = x.detach().amax(-1, keepdim=True)  # (..., 1)
        shifted = x.detach() - top
        kept = shifted > UNDERFLOW
        terms = shifted.clamp_(min=UNDERFLOW).exp_().mul_(kept)  # exp of in-range values only
        total = terms.sum(-1, keepdim=True)  # >= 1: the largest term is exp(0)
        ctx.save_for_backward(terms, total)
        return (total.log() + top).squeeze(-1)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        terms, total = ctx.saved_tensors  # type: ignore[attr-defined]
        return terms * (grad.unsqueeze(-1) / total)  # softmax(x) * grad


def logsumexp(x: Tensor) -> Tensor:
    """``torch.logsumexp(x, dim=-1)``, fast on CPU for rows of mostly :data:`MASKED_LOGIT`.

    ``x`` must be finite (padding as :data:`MASKED_LOGIT`, never ``-inf``). Same values as torch's
    to float32 rounding (a row of only :data:`MASKED_LOGIT` gives
    ``MASKED_LOGIT + log(n)``, as torch does); the gradient is the row softmax with terms under
    ``exp(UNDERFLOW)`` set to 0. Other devices, whose ``exp`` has no slow path, use torch's fused op.
    """
    if x.device.type != "cpu":
        return torch.logsumexp(x, dim=-1)
    return _RowLogSumExp.apply(x)  # type: ignore[no-any-return]


def log_softmax(x: Tensor) -> Tensor:
    """``x.log_softmax(-1)`` through :func:`logsumexp`, on logits shifted by their row maximum (so
    that a row of :data:`MASKED_LOGIT` keeps full precision; the shift cancels in the gradient)."""
    shifted = x - x.detach().amax(-1, keepdim=True)
    return shifted - logsumexp(shifted).unsqueeze(-1)
