"""SGE, semantic-guided enhancement.

A light head predicts, for every clip, the event-semantic context in the prior embedding space
(the space of the MLLM's event descriptions) from the video features alone:

    e_i = W_2 GELU(Conv1d_3(h)_i)                         (B, L, Dp)

During training ESTA's clip-level target (the description of the event(s) covering the clip)
supervises ``e`` (loss ``sge`` in the criterion). The prediction is fed back through a gated residual

    u_i = W_u e_i,   g_i = sigmoid(W_g [h_i; u_i]),   h'_i = LayerNorm(h_i + g_i * u_i)

so at inference the enhancement needs only the video. Padded clips are zeroed before the temporal
convolution so they never leak into real neighbours.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SemanticGuidedEnhancement"]


class SemanticGuidedEnhancement(nn.Module):
    """Predict event semantics per clip and feed them back into the clip features."""

    def __init__(self, dim: int, prior_dim: int, dropout: float) -> None:
        super().__init__()
        self.context = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.predict = nn.Linear(dim, prior_dim)
        self.up = nn.Linear(prior_dim, dim)
        self.gate = nn.Linear(2 * dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Enhance clip features.

        Args:
            x: (B, L, D) clip features; mask: (B, L) bool, True for a real clip.

        Returns:
            The enhanced features (B, L, D) and the semantic prediction (B, L, Dp).
        """
        x_in = x * mask.unsqueeze(-1).to(x.dtype)
        ctx = self.context(x_in.transpose(1, 2)).transpose(1, 2)  # (B, L, D)
        pred = self.predict(nn.functional.gelu(ctx))  # (B, L, Dp)
        up = self.up(pred)  # (B, L, D)
        gate = torch.sigmoid(self.gate(torch.cat([x, up], dim=-1)))  # (B, L, D)
        return self.norm(x + self.dropout(gate * up)), pred
