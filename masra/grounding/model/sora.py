"""SORA, second-order relational attention.

First-order relations are the attention profile of each clip over all clips,

    R = softmax_j(q_i . k_j / sqrt(d))       q = W_q LN(h), k = W_k LN(h)          (B, L, L)

and second-order relations compare those profiles: two clips are related when they relate to the
*same* clips, whatever their own features look like,

    S_ij = <R_i, R_j> / (|R_i| |R_j|)                                               (B, L, L)

SORA attends with weights from ``S`` and adds the result back:

    A = softmax_j(S_ij / tau),   h' = h + Dropout(W_o (A W_v LN(h)))

``tau`` is learnt (through its log). Padded clips are excluded as keys at both steps; with
``window > 0`` both steps are restricted to ``|i - j| <= window``.

SORA has one head, so in training its four (D, D) projections fold into two: the first-order
logits are ``(W_k^T W_q h_i + W_k^T b_q) . h_j`` (the terms of ``b_k`` are constant along ``j`` and
cancel in the softmax), and, since every attention row sums to one,
``W_o (A (W_v h + b_v)) + b_o = A ((W_o W_v) h + W_o b_v + b_o)``. The parameters and the function
are the published ones (checkpoints load unchanged); only float rounding differs, and a (D, D)
product per step replaces two of the four per-clip projections (a saving once a batch holds more
clips than D, as training batches do). Inference keeps the four projections at every batch size, so
a query batched by ``masra eval`` and the same query alone in ``masra predict`` take one path.

LRCA teaches the model's local clip similarities the caption structure; SORA propagates that local
structure along chains of related clips. The relations are computed in float32 (autocast off).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from masra.grounding.masking import MASKED_LOGIT

__all__ = ["SecondOrderRelationalAttention"]


class SecondOrderRelationalAttention(nn.Module):
    """Residual attention over clips whose weights come from second-order relations."""

    def __init__(self, dim: int, dropout: float, window: int = 0, init_temperature: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.window = window
        self.log_temperature = nn.Parameter(torch.tensor(math.log(init_temperature)))
        self.scale = dim**-0.5

    def _blocked(self, mask: Tensor) -> Tensor:
        """(B, L) clip mask -> (B, 1, L), or (B, L, L) with a window: True where a key is not allowed."""
        blocked = ~mask[:, None, :]
        if self.window > 0:
            length = mask.shape[1]
            band = torch.ones(length, length, dtype=torch.bool, device=mask.device)
            blocked = blocked | ~band.triu(-self.window).tril(self.window)  # |i - j| > window
        return blocked

    def _qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The three projections of (B, L, D) as one matmul over the packed weights: q, k, v (B, L, D)."""
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])  # (3D, D)
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])  # (3D,)
        q, k, v = nn.functional.linear(h, weight, bias).chunk(3, dim=-1)
        return q, k, v

    def _folded(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The folded projections (see the module docstring): queries ``p`` whose dot products with
        ``h`` are the first-order logits, the folded values ``w``, and ``h`` itself, each (B, L, D)."""
        wq, wk, wv, wo = self.query.weight, self.key.weight, self.value.weight, self.out.weight
        # b_k cancels in the softmax; its zero term keeps it in the graph (a zero gradient, not
        # None, so distributed training sees every parameter used)
        p = nn.functional.linear(h, wk.t() @ wq, self.query.bias @ wk + 0.0 * self.key.bias)  # (B, L, D)
        w = nn.functional.linear(h, wo @ wv, wo @ self.value.bias + self.out.bias)  # (B, L, D)
        return p, h, w

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, L, D), mask (B, L) -> updated features (B, L, D) and the attention (B, L, L)."""
        blocked = self._blocked(mask)
        h = self.norm(x)
        folded = self.training  # see the module docstring
        q, k, v = self._folded(h) if folded else self._qkv(h)
        with torch.autocast(x.device.type, enabled=False):  # relations in float32
            first = torch.bmm(q.float(), k.float().transpose(1, 2)) * self.scale
            first = first.masked_fill(blocked, MASKED_LOGIT).softmax(-1)  # (B, L, L) first-order profiles
            profile = nn.functional.normalize(first, dim=-1)
            second = torch.bmm(profile, profile.transpose(1, 2))  # (B, L, L) cosine of profiles
            logits = second / self.log_temperature.float().exp()
            attn = logits.masked_fill(blocked, MASKED_LOGIT).softmax(-1)  # (B, L, L)
        out = torch.bmm(attn.to(v.dtype), v)  # (B, L, D)
        if not folded:
            out = self.out(out)
        return x + self.dropout(out), attn
