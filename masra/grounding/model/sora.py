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
LRCA teaches the model's local clip similarities the caption structure; SORA propagates that local
structure along chains of related clips. The relations are computed in float32 (autocast off).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SecondOrderRelationalAttention"]

_NEG = -1e4  # finite stand-in for -inf in float32 masked softmaxes


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

    def _key_mask(self, mask: Tensor) -> Tensor:
        """(B, L) clip mask -> (B, L, L) allowed (query, key) pairs."""
        allowed = mask[:, None, :].expand(-1, mask.shape[1], -1)
        if self.window > 0:
            idx = torch.arange(mask.shape[1], device=mask.device)
            allowed = allowed & ((idx[:, None] - idx[None, :]).abs() <= self.window)
        return allowed

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, L, D), mask (B, L) -> updated features (B, L, D) and the attention (B, L, L)."""
        allowed = self._key_mask(mask)
        h = self.norm(x)
        q, k = self.query(h).float(), self.key(h).float()
        with torch.autocast(x.device.type, enabled=False):  # relations in float32
            first = torch.einsum("bid,bjd->bij", q, k) * self.scale
            first = first.masked_fill(~allowed, _NEG).softmax(-1)  # (B, L, L) first-order profiles
            profile = nn.functional.normalize(first, dim=-1)
            second = torch.einsum("bik,bjk->bij", profile, profile)  # (B, L, L) cosine of profiles
            logits = second / self.log_temperature.float().exp()
            attn = logits.masked_fill(~allowed, _NEG).softmax(-1)  # (B, L, L)
        out = torch.einsum("bij,bjd->bid", attn.to(h.dtype), self.value(h))  # (B, L, D)
        return x + self.dropout(self.out(out)), attn
