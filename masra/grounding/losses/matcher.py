"""Hungarian matching between predicted moments and ground-truth moments.

The cost of assigning query ``q`` to target ``j`` is

    C[q, j] = -cost_class * p_fg[q] + cost_span * |span_q - span_j|_1 - cost_giou * gIoU(span_q, span_j)

with spans in normalised (center, width) form (the gIoU is computed in (start, end) form). The costs
of the whole batch are computed in one go, each target against the Q queries of its own sample only
(a (sum N_i, Q) matrix, not the (B*Q, sum N_i) cross product), copied to the host once, and each
sample's (Q, N_i) block goes to :func:`scipy.optimize.linear_sum_assignment`. Several decoder layers
are matched in one call by stacking them along the batch (the criterion does), so a training step
waits on the device once for matching, whatever the number of layers.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from masra.grounding.config import LossConfig
from masra.grounding.data.batch import host_to_device
from masra.grounding.spans import paired_generalized_iou, span_cxw_to_xx

__all__ = ["HungarianMatcher", "MatchIndices", "build_matcher"]

MatchIndices = list[tuple[Tensor, Tensor]]
"""Per sample, (query indices, target indices): two int64 tensors of equal length min(Q, N_i), on the
CPU."""


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
            For each sample, (query indices, target indices) sorted by query index, on the CPU.
        """
        batch = pred_logits.shape[0]
        if len(targets) != batch:
            raise ValueError(f"matcher: {batch} predictions but {len(targets)} target lists")
        sizes = [int(t.shape[0]) for t in targets]
        empty = torch.empty(0, dtype=torch.int64)
        if sum(sizes) == 0:
            return [(empty, empty) for _ in range(batch)]

        device = pred_spans.device
        owner = host_to_device(torch.repeat_interleave(torch.arange(batch), torch.as_tensor(sizes)), device)
        # owner: (sum N,) the sample of each target
        prob_fg = pred_logits.float().softmax(-1)[..., 0]  # (B, Q)
        spans = pred_spans.float()[owner]  # (sum N, Q, 2): each target's own sample's queries
        tgt = torch.cat(targets).to(spans)[:, None, :]  # (sum N, 1, 2)
        cost = (
            self.cost_span * (spans - tgt).abs().sum(-1)
            - self.cost_giou * paired_generalized_iou(span_cxw_to_xx(spans), span_cxw_to_xx(tgt))
            - self.cost_class * prob_fg[owner]
        )  # (sum N, Q)
        cost = cost.cpu()  # the one wait on the device per call

        indices: MatchIndices = []
        for b, block in enumerate(cost.split(sizes, dim=0)):
            if sizes[b] == 0:
                indices.append((empty, empty))
                continue
            rows, cols = linear_sum_assignment(block.T.numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return indices


def build_matcher(cfg: LossConfig) -> HungarianMatcher:
    """The matcher with the costs of a loss config."""
    return HungarianMatcher(cost_class=cfg.cost_class, cost_span=cfg.cost_span, cost_giou=cfg.cost_giou)
