"""Hungarian matching between predicted moments and ground-truth moments.

The cost of assigning query ``q`` to target ``j`` is

    C[q, j] = -cost_class * p_fg[q] + cost_span * |span_q - span_j|_1 - cost_giou * gIoU(span_q, span_j)

with spans in normalised (center, width) form (the gIoU is computed in (start, end) form). The costs
of the whole batch are computed in one go against the concatenated targets; only the small
(Q, N_i) block of each sample goes to :func:`scipy.optimize.linear_sum_assignment`.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from masra.grounding.config import LossConfig
from masra.grounding.span_ops import generalized_temporal_iou, span_cxw_to_xx

__all__ = ["HungarianMatcher", "MatchIndices", "build_matcher"]

MatchIndices = list[tuple[Tensor, Tensor]]
"""Per sample, (query indices, target indices): two int64 tensors of equal length min(Q, N_i)."""


class HungarianMatcher(nn.Module):
    """One-to-one matching of Q queries to the N_i targets of each sample."""

    def __init__(self, *, cost_class: float = 4.0, cost_span: float = 10.0, cost_giou: float = 1.0) -> None:
        super().__init__()
        if min(cost_class, cost_span, cost_giou) < 0 or cost_class + cost_span + cost_giou == 0:
            raise ValueError(
                f"matching costs must be >= 0 and not all 0, got class={cost_class}, "
                f"span={cost_span}, giou={cost_giou}"
            )
        self.cost_class = cost_class
        self.cost_span = cost_span
        self.cost_giou = cost_giou

    @torch.no_grad()
    def forward(self, pred_logits: Tensor, pred_spans: Tensor, targets: list[Tensor]) -> MatchIndices:
        """Match every sample's queries to its targets.

        Args:
            pred_logits: (B, Q, 2) logits, index 0 = foreground.
            pred_spans: (B, Q, 2) normalised (center, width).
            targets: B tensors, each (N_i, 2) normalised (center, width); N_i may be 0.

        Returns:
            For each sample, (query indices, target indices) on the CPU, sorted by query index.
        """
        batch, num_queries = pred_logits.shape[:2]
        if len(targets) != batch:
            raise ValueError(f"matcher: {batch} predictions but {len(targets)} target lists")
        sizes = [int(t.shape[0]) for t in targets]
        empty = torch.empty(0, dtype=torch.int64)
        if sum(sizes) == 0:
            return [(empty, empty) for _ in range(batch)]

        prob_fg = pred_logits.flatten(0, 1).float().softmax(-1)[:, 0]  # (B*Q,)
        spans = pred_spans.flatten(0, 1).float()  # (B*Q, 2)
        tgt = torch.cat(targets).to(spans)  # (sum N, 2)
        cost = (
            self.cost_span * torch.cdist(spans, tgt, p=1)
            - self.cost_giou * generalized_temporal_iou(span_cxw_to_xx(spans), span_cxw_to_xx(tgt))
            - self.cost_class * prob_fg[:, None]
        )  # (B*Q, sum N)
        cost = cost.view(batch, num_queries, -1).cpu()

        indices: MatchIndices = []
        for b, block in enumerate(cost.split(sizes, dim=-1)):
            if sizes[b] == 0:
                indices.append((empty, empty))
                continue
            rows, cols = linear_sum_assignment(block[b].numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return indices


def build_matcher(cfg: LossConfig) -> HungarianMatcher:
    """The matcher with the costs of a loss config."""
    return HungarianMatcher(cost_class=cfg.cost_class, cost_span=cfg.cost_span, cost_giou=cfg.cost_giou)
