"""Hungarian matching between predicted moments and ground-truth moments.

The cost of assigning query ``q`` to target ``j`` is

    C[q, j] = -cost_class * p_fg[q] + cost_span * |span_q - span_j|_1 - cost_giou * gIoU(span_q, span_j)

with spans in normalised (center, width) form (the gIoU is computed in (start, end) form). The costs
of the whole batch are computed in one go, each target against the Q queries of its own sample only
(a (sum N_i, Q) matrix, not the (B*Q, sum N_i) cross product), copied to the host once, and each
sample's (Q, N_i) block goes to :func:`scipy.optimize.linear_sum_assignment`. Several decoder layers
are matched in one call by stacking them along the batch (the criterion does), so a training step
waits on the device once for matching, whatever the number of layers.

With ``solver="batched"`` (``LossConfig.matcher``) the costs are laid out as a padded (B, G, Q)
tensor (G = max N_i; padded targets masked) and solved on their own device by
:func:`~masra.grounding.losses.assignment.batched_linear_sum_assignment`: no host round trip, and the
returned indices stay on the device. The cost values are the same as scipy's path, so the two agree
wherever the optimum is unique. A batch with more targets than queries in some sample (N_i > Q)
goes to scipy either way.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from masra.grounding.config import LossConfig
from masra.grounding.config.model import MATCHERS
from masra.grounding.data.batch import host_to_device
from masra.grounding.losses.assignment import batched_linear_sum_assignment
from masra.grounding.spans import paired_generalized_iou, span_cxw_to_xx

__all__ = ["HungarianMatcher", "MatchIndices", "build_matcher"]

MatchIndices = list[tuple[Tensor, Tensor]]
"""Per sample, (query indices, target indices): two int64 tensors of equal length min(Q, N_i), on the
CPU (``scipy``) or on the predictions' device (``batched``)."""

_PAD_SPAN = (0.5, 1.0)  # (center, width) of a padded target: finite costs, never assigned


class HungarianMatcher(nn.Module):
    """One-to-one matching of Q queries to the N_i targets of each sample."""

    def __init__(
        self,
        *,
        cost_class: float = 4.0,
        cost_span: float = 10.0,
        cost_giou: float = 1.0,
        solver: str = "scipy",
    ) -> None:
        super().__init__()
        if solver not in MATCHERS:
            raise ValueError(f"matcher solver must be one of {MATCHERS}, got {solver!r}")
        if min(cost_class, cost_span, cost_giou) < 0 or cost_class + cost_span + cost_giou == 0:
            raise ValueError(
                f"matching costs must be >= 0 and not all 0, got class={cost_class}, "
                f"span={cost_span}, giou={cost_giou}"
            )
        self.cost_class = cost_class
        self.cost_span = cost_span
        self.cost_giou = cost_giou
        self.solver = solver

    @torch.no_grad()
    def forward(self, pred_logits: Tensor, pred_spans: Tensor, targets: list[Tensor]) -> MatchIndices:
        """Match every sample's queries to its targets.

        Args:
            pred_logits: (B, Q, 2) logits, index 0 = foreground.
            pred_spans: (B, Q, 2) normalised (center, width).
            targets: B tensors, each (N_i, 2) normalised (center, width); N_i may be 0.

        Returns:
            For each sample, (query indices, target indices) sorted by query index: on the CPU with
            the scipy solver, on ``pred_spans``' device with the batched one.
        """
        batch = pred_logits.shape[0]
        if len(targets) != batch:
            raise ValueError(f"matcher: {batch} predictions but {len(targets)} target lists")
        sizes = [int(t.shape[0]) for t in targets]
        empty = torch.empty(0, dtype=torch.int64)
        if sum(sizes) == 0:
            return [(empty, empty) for _ in range(batch)]
        if self.solver == "batched" and max(sizes) <= pred_spans.shape[1]:
            return self._batched(pred_logits, pred_spans, targets, sizes)

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

    @torch.no_grad()
    def match_flat(
        self, pred_logits: Tensor, pred_spans: Tensor, targets: list[Tensor]
    ) -> tuple[Tensor, Tensor] | None:
        """The batched solver's matching, flattened: what :meth:`forward` returns, concatenated.

        Returns (query indices, target indices), each (sum N_i,) int64 on ``pred_spans``' device,
        sample-major and sorted by query within a sample (every target is matched: N_i <= Q), or
        None when the batched solver does not apply (the scipy solver, no targets, or some N_i > Q):
        the caller then uses :meth:`forward`. No per-sample work and no host read.
        """
        sizes = [int(t.shape[0]) for t in targets]
        if self.solver != "batched" or sum(sizes) == 0 or max(sizes) > pred_spans.shape[1]:
            return None
        query, target = self._batched_solve(pred_logits, pred_spans, targets, sizes)  # (B, G) each
        slots = self._slots(sizes, pred_spans.device)
        return query.flatten()[slots], target.flatten()[slots]

    @staticmethod
    def _slots(sizes: list[int], device: torch.device) -> Tensor:
        """(sum N_i,) positions ``b * G + k`` (k < N_i) of the real targets in a (B, G) layout."""
        n = np.asarray(sizes, dtype=np.int64)
        starts = np.cumsum(n) - n  # first flat index of each sample's targets
        slots = np.repeat(np.arange(len(sizes)) * int(n.max()) - starts, n) + np.arange(int(n.sum()))
        return host_to_device(torch.from_numpy(slots), device)

    def _batched(
        self, pred_logits: Tensor, pred_spans: Tensor, targets: list[Tensor], sizes: list[int]
    ) -> MatchIndices:
        """:meth:`forward` with the batched solver; needs max(sizes) <= Q."""
        query, target = self._batched_solve(pred_logits, pred_spans, targets, sizes)
        return [(query[b, :n], target[b, :n]) for b, n in enumerate(sizes)]

    def _batched_solve(
        self, pred_logits: Tensor, pred_spans: Tensor, targets: list[Tensor], sizes: list[int]
    ) -> tuple[Tensor, Tensor]:
        """(B, G) query and target indices (G = max N_i <= Q), each row sorted by query, padding last."""
        batch, queries = pred_spans.shape[:2]
        device = pred_spans.device
        width = max(sizes)
        spans = pred_spans.float()[:, None]  # (B, 1, Q, 2)
        padded = spans.new_full((batch * width, 2), _PAD_SPAN[1])
        padded[:, 0] = _PAD_SPAN[0]
        padded = padded.index_copy(0, self._slots(sizes, device), torch.cat(targets).to(spans))
        padded = padded.view(batch, width, 1, 2)  # (B, G, 1, 2)
        cost = (
            self.cost_span * (spans - padded).abs().sum(-1)
            - self.cost_giou * paired_generalized_iou(span_cxw_to_xx(spans), span_cxw_to_xx(padded))
            - self.cost_class * pred_logits.float().softmax(-1)[..., 0][:, None]
        )  # (B, G, Q): the same values as the scipy path's
        real = torch.arange(width)[None, :] < torch.as_tensor(sizes)[:, None]  # (B, G), on the host
        col = batched_linear_sum_assignment(cost, host_to_device(real, device))  # (B, G)
        # Sort each sample's pairs by query; padded targets (column -1 -> Q) sort last.
        query, target = col.masked_fill(col < 0, queries).sort(dim=1)
        return query, target


def build_matcher(cfg: LossConfig) -> HungarianMatcher:
    """The matcher with the costs and solver of a loss config."""
    return HungarianMatcher(
        cost_class=cfg.cost_class, cost_span=cfg.cost_span, cost_giou=cfg.cost_giou, solver=cfg.matcher
    )
