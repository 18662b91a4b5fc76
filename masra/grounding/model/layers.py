"""Building blocks shared by the grounding model: MLP, positional encoding and attention layers.

Mask convention: a boolean mask is ``True`` where the entry is real. ``nn.MultiheadAttention`` wants the
opposite (``True`` = ignore), so every call below passes ``~mask``. All layers are post-norm, as in
DETR; positional encodings are added to queries and keys only, never to values.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

__all__ = [
    "MLP",
    "CrossAttentionLayer",
    "DecoderLayer",
    "SelfAttentionLayer",
    "masked_mean",
    "sine_position_encoding",
]


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU in between (none after the last)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs num_layers >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.dropout(torch.relu(x))
        return x


def masked_mean(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Mean of ``x`` over ``dim`` counting only entries where ``mask`` is True.

    ``mask`` has the shape of ``x`` without its trailing feature dim; an all-False slice gives 0.
    """
    weight = mask.to(x.dtype).unsqueeze(-1)
    return (x * weight).sum(dim) / weight.sum(dim).clamp(min=1.0)


def sine_position_encoding(mask: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Sine/cosine encoding of each clip's position relative to its own video length.

    Args:
        mask: (B, L) bool, True for a real clip.
        dim: encoding size (even).

    Returns:
        (B, L, dim) float32; position ``i`` of a video with ``n`` clips is encoded at
        ``2 * pi * (i + 1) / n``, so videos of different lengths share one scale (like the normalised
        spans). Padded positions get values past ``2 * pi``; they are masked everywhere they are read.
    """
    if dim % 2:
        raise ValueError(f"sine_position_encoding needs an even dim, got {dim}")
    length = mask.sum(1, keepdim=True).clamp(min=1).float()  # (B, 1)
    steps = torch.arange(1, mask.shape[1] + 1, device=mask.device, dtype=torch.float32)  # (L,)
    pos = steps[None, :] / length * (2 * math.pi)  # (B, L)
    freq = temperature ** (torch.arange(dim // 2, device=mask.device, dtype=torch.float32) / (dim // 2))
    angles = pos[..., None] / freq  # (B, L, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.dropout(self.net(x)))


class CrossAttentionLayer(nn.Module):
    """Queries (clips) attend to a key/value memory (text tokens, possibly extended), then an FFN.

    Can return the head-averaged attention weights, which DAI reads.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = _FeedForward(dim, ffn_dim, dropout)

    def forward(
        self, x: Tensor, memory: Tensor, memory_mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, L, D), memory (B, S, D), memory_mask (B, S) -> (B, L, D) and, when ``need_weights``,
        the head-averaged attention (B, L, S) (else None, which lets torch use its fused kernels)."""
        out, weights = self.attn(
            x,
            memory,
            memory,
            key_padding_mask=~memory_mask,
            need_weights=need_weights,
            average_attn_weights=True,
        )
        x = self.norm(x + self.dropout(out))
        return self.ffn(x), weights


class SelfAttentionLayer(nn.Module):
    """Self-attention over clips with positional encoding on queries and keys, then an FFN (none when
    ``ffn_dim`` is 0)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = _FeedForward(dim, ffn_dim, dropout) if ffn_dim > 0 else None

    def forward(self, x: Tensor, mask: Tensor, pos: Tensor) -> Tensor:
        """x (B, L, D), mask (B, L), pos (B, L, D) -> (B, L, D)."""
        qk = x + pos
        out = self.attn(qk, qk, x, key_padding_mask=~mask, need_weights=False)[0]
        x = self.norm(x + self.dropout(out))
        return x if self.ffn is None else self.ffn(x)


class DecoderLayer(nn.Module):
    """DETR decoder layer: query self-attention, cross-attention to the clip memory, FFN."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = _FeedForward(dim, ffn_dim, dropout)

    def forward(self, tgt: Tensor, query_pos: Tensor, memory: Tensor, mask: Tensor, pos: Tensor) -> Tensor:
        """tgt (B, Q, D), query_pos (B, Q, D), memory (B, L, D), mask (B, L), pos (B, L, D) -> (B, Q, D)."""
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, q, tgt, need_weights=False)[0]))
        out = self.cross_attn(
            tgt + query_pos, memory + pos, memory, key_padding_mask=~mask, need_weights=False
        )[0]
        tgt = self.norm2(tgt + self.dropout2(out))
        return self.ffn(tgt)
