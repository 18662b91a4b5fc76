"""Reference span maths for the tests: the inverse of :func:`masra.grounding.spans.span_cxw_to_xx`
and the pairwise IoU and gIoU that :func:`~masra.grounding.spans.paired_generalized_iou` is checked
against. The package itself needs none of them (its element-wise IoU is
:func:`masra.grounding.spans.paired_iou`).

All take tensors whose last dimension is 2, spans in (start, end) ``xx`` form unless said otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor


def span_xx_to_cxw(spans: Tensor) -> Tensor:
    """(..., 2) (start, end) -> (..., 2) (center, width)."""
    start, end = spans.unbind(-1)
    return torch.stack([0.5 * (start + end), end - start], dim=-1)


def _pairwise_inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union lengths of every pair; a (N, 2), b (M, 2) -> two (N, M)."""
    left = torch.maximum(a[:, None, 0], b[None, :, 0])  # (N, M)
    right = torch.minimum(a[:, None, 1], b[None, :, 1])  # (N, M)
    inter = (right - left).clamp(min=0)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return inter, union


def temporal_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Pairwise IoU of a (N, 2) and b (M, 2) -> (N, M) in [0, 1].

    >>> temporal_iou(torch.tensor([[0.0, 0.4]]), torch.tensor([[0.2, 0.6]]))
    tensor([[0.3333]])
    """
    inter, union = _pairwise_inter_union(a, b)
    return inter / union.clamp(min=eps)


def generalized_temporal_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Pairwise gIoU of a (N, 2) and b (M, 2) -> (N, M) in [-1, 1]: IoU - (hull - union) / hull.

    >>> generalized_temporal_iou(torch.tensor([[0.0, 0.2]]), torch.tensor([[0.6, 0.8]]))
    tensor([[-0.5000]])
    """
    inter, union = _pairwise_inter_union(a, b)
    iou = inter / union.clamp(min=eps)
    hull = torch.maximum(a[:, None, 1], b[None, :, 1]) - torch.minimum(a[:, None, 0], b[None, :, 0])
    return iou - (hull - union) / hull.clamp(min=eps)
