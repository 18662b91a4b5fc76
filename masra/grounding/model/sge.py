"""SGE, semantic-guided enhancement.

A light head predicts, for every clip, the event-semantic context in the prior embedding space
(the space of the MLLM's event descriptions) from the video features alone:

    e_i = W_2 GELU(Conv1d_3(h)_i)                         (B, L, Dp)

(``sge_depthwise``: the convolution is per channel, a candidate for a cheaper training step.)

During training ESTA's clip-level target (the description of the event(s) covering the clip)
supervises ``e`` (loss ``sge`` in the criterion). The prediction is fed back through a gated residual

    u_i = W_u e_i,   g_i = sigmoid(W_g [h_i; u_i]),   h'_i = LayerNorm(h_i + g_i * u_i)

so at inference the enhancement needs only the video. Padded clips are zeroed before the temporal
convolution so they never leak into real neighbours.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from masra.grounding.model.layers import masked_mean

__all__ = ["SemanticGuidedEnhancement", "SemanticRelevance"]


class SemanticGuidedEnhancement(nn.Module):
    """Predict event semantics per clip and feed them back into the clip features."""

    def __init__(self, dim: int, prior_dim: int, dropout: float, depthwise: bool = False) -> None:
        super().__init__()
        # ``depthwise``: each channel convolved on its own (D x 3 weights instead of D x D x 3); the
        # ``predict`` layer after it mixes the channels, as in a separable convolution.
        self.context = nn.Conv1d(dim, dim, kernel_size=3, padding=1, groups=dim if depthwise else 1)
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
        ctx = self._context(x_in)  # (B, L, D)
        pred = self.predict(nn.functional.gelu(ctx))  # (B, L, Dp)
        up = self.up(pred)  # (B, L, D)
        gate = torch.sigmoid(self.gate(torch.cat([x, up], dim=-1)))  # (B, L, D)
        return self.norm(x + self.dropout(gate * up)), pred

    def _context(self, x: Tensor) -> Tensor:
        """The width-3 temporal convolution ``self.context`` of (B, L, D) as one matmul over each clip's
        three neighbours (zero beyond the ends): the same arithmetic as ``Conv1d``, whose CPU backward
        is about twice as slow at these shapes (docs/benchmarks.md)."""
        padded = nn.functional.pad(x, (0, 0, 1, 1))  # (B, L + 2, D)
        bias = self.context.bias
        assert bias is not None  # built with one
        if self.context.groups > 1:  # depthwise: (D, 1, 3) weights, three scaled shifts
            w = self.context.weight[:, 0]  # (D, 3)
            return padded[:, :-2] * w[:, 0] + padded[:, 1:-1] * w[:, 1] + padded[:, 2:] * w[:, 2] + bias
        taps = torch.cat([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], dim=-1)  # (B, L, 3D)
        weight = self.context.weight.permute(2, 1, 0).flatten(0, 1)  # (3D, D): tap-major rows
        return nn.functional.linear(taps, weight.T, bias)


class SemanticRelevance(nn.Module):
    """How well every clip's learned semantics match the query, in the prior embedding space.

    The query's mean token feature is mapped into the prior space (``W_q``, the identity at start when
    the query features and the prior embeddings have the same size: both are then one sentence
    encoder's space), and compared with each clip's semantic projection ``s_i`` (ESTA's, which the
    priors supervise):

        q = W_q masked_mean(t),   r_i = cos(s_i, q)                      (B, L) in [-1, 1]
        h'_i = h_i + W_r (a r_i),   saliency bonus = g * a r_i             (a learnt scale, g from 0)
    """

    def __init__(self, text_dim: int, prior_dim: int, dim: int, init_scale: float = 5.0) -> None:
        super().__init__()
        self.query_map = nn.Linear(text_dim, prior_dim)
        if text_dim == prior_dim:
            with torch.no_grad():
                self.query_map.weight.copy_(torch.eye(prior_dim))
                self.query_map.bias.zero_()
        self.log_scale = nn.Parameter(torch.tensor(float(init_scale)).log())
        self.embed = nn.Linear(1, dim)
        self.gain = nn.Parameter(torch.zeros(()))

    def relevance(self, semantics: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        """semantics (B, L, Dp), raw query tokens (kB, T, Dt) and their mask (kB, T) -> (kB, L) cosines.

        With k > 1 the queries come in k blocks of B, block j's query b scored against video b (the
        matched and the rolled-query pass): each video's semantics are normalised once, not k times.
        """
        batch = semantics.shape[0]
        if text.shape[0] % batch:
            raise ValueError(f"relevance: {text.shape[0]} queries for {batch} videos (need k * videos)")
        pooled = masked_mean(text, text_mask, dim=1)  # (kB, Dt)
        q = nn.functional.normalize(self.query_map(pooled), dim=-1)  # (kB, Dp)
        s = nn.functional.normalize(semantics, dim=-1)  # (B, L, Dp)
        q = q.to(s.dtype).view(-1, batch, q.shape[-1])  # (k, B, Dp)
        return torch.einsum("bld,kbd->kbl", s, q).flatten(0, 1)  # (kB, L)

    def forward(self, x: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, L, D), relevance (B, L) -> fused features (B, L, D), saliency bonus (B, L)."""
        scaled = (relevance * self.log_scale.exp()).to(x.dtype)  # (B, L)
        return x + self.embed(scaled.unsqueeze(-1)), self.gain.to(x.dtype) * scaled
