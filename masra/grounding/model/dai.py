"""DAI, decoupled alignment interaction with a context-aware codebook.

In the clip-to-text cross attention every clip must spread its attention over the query words, even
when it has nothing to do with the query. DAI appends K codebook entries to the text keys and values:

    c = masked_mean_i(v_i)                                  video context  (B, D)
    M_k = C_k + MLP(c)                                      entries        (B, K, D)
    keys/values = [t_1 .. t_T ; M_1 .. M_K]

so an irrelevant clip can put its attention mass on the codebook instead. The mass a clip puts on
the text in the last cross-modal layer,

    r_i = sum_{j <= T} a_ij      in (0, 1)                  (B, L)

is a decoupled relevance signal. It is fed to the clip features used by the saliency head and the
decoder (``h_i + w_r * logit(r_i)`` through a learnt embedding) and added to the saliency logit with a
learnt gain that starts at 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from masra.grounding.model.layers import MLP, masked_mean

__all__ = ["ContextCodebook", "RelevanceFusion"]


class ContextCodebook(nn.Module):
    """K learnable entries shifted by a projection of the pooled video."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.entries = nn.Parameter(torch.randn(size, dim) * dim**-0.5)
        self.condition = MLP(dim, dim, dim, num_layers=2)

    def forward(self, video: Tensor, video_mask: Tensor) -> tuple[Tensor, Tensor]:
        """video (B, L, D), video_mask (B, L) -> entries (B, K, D) and their mask (B, K), all True."""
        context = self.condition(masked_mean(video, video_mask, dim=1))  # (B, D)
        entries = self.entries.to(video.dtype).unsqueeze(0) + context.unsqueeze(1)  # (B, K, D)
        return entries, video_mask.new_ones(entries.shape[:2])


class RelevanceFusion(nn.Module):
    """Turn the text attention mass into features for the saliency head and the decoder."""

    def __init__(self, dim: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.embed = nn.Linear(1, dim)
        self.gain = nn.Parameter(torch.zeros(()))
        self.eps = eps

    def forward(self, x: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, L, D), relevance (B, L) in [0, 1] -> fused features (B, L, D), saliency bonus (B, L)."""
        logit = torch.logit(relevance.float(), eps=self.eps).to(x.dtype)  # (B, L)
        return x + self.embed(logit.unsqueeze(-1)), self.gain.to(x.dtype) * logit
