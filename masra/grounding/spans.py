"""Pure span maths on normalised 1-D moments.

Two forms are used:

* ``cxw``: (center, width), what the model predicts and the matcher compares;
* ``xx``: (start, end), what annotations and metrics use.

All functions take tensors whose last dimension is 2 and work on any leading shape. Nothing here
clamps: callers decide whether spans may leave ``[0, 1]``.

Examples:
    >>> import torch
    >>> span_cxw_to_xx(torch.tensor([[0.5, 0.2]]))
    tensor([[0.4000, 0.6000]])
    >>> temporal_iou(torch.tensor([[0.0, 0.4]]), torch.tensor([[0.2, 0.6]]))
    tensor([[0.3333]])
    >>> generalized_temporal_iou(torch.tensor([[0.0, 0.2]]), torch.tensor([[0.6, 0.8]]))
    tensor([[-0.5000]])
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "generalized_temporal_iou",
    "paired_generalized_iou",
    "paired_iou",
    "span_cxw_to_xx",
    "span_xx_to_cxw",
    "temporal_iou",
]


def span_cxw_to_xx(spans: Tensor) -> Tensor:
    """(..., 2) (center, width) -> (..., 2) (start, end)."""
    center, width = spans.unbind(-1)
    return torch.stack([center - 0.5 * width, center + 0.5 * width], dim=-1)


def span_xx_to_cxw(spans: Tensor) -> Tensor:
    """(..., 2) (start, end) -> (..., 2) (center, width)."""
    start, end = spans.unbind(-1)
    return torch.stack([0.5 * (start + end), end - start], dim=-1)


def _pairwise_inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union lengths of every pair; a (N, 2), b (M, 2) in xx form -> two (N, M)."""
    left = torch.maximum(a[:, None, 0], b[None, :, 0])  # (N, M)
    right = torch.minimum(a[:, None, 1], b[None, :, 1])  # (N, M)
    inter = (right - left).clamp(min=0)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return inter, union


def temporal_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Pairwise IoU of a (N, 2) and b (M, 2) spans in xx form -> (N, M) in [0, 1]."""
    inter, union = _pairwise_inter_union(a, b)
    return inter / union.clamp(min=eps)


def generalized_temporal_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Pairwise generalised IoU of a (N, 2) and b (M, 2) spans in xx form -> (N, M) in [-1, 1].

    gIoU = IoU - (hull - union) / hull, where ``hull`` is the smallest span covering both; it keeps a
    useful gradient for disjoint spans.
    """
    inter, union = _pairwise_inter_union(a, b)
    iou = inter / union.clamp(min=eps)
    hull = torch.maximum(a[:, None, 1], b[None, :, 1]) - torch.minimum(a[:, None, 0], b[None, :, 0])
    return iou - (hull - union) / hull.clamp(min=eps)


def paired_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Element-wise IoU of matched spans a (..., 2) and b (..., 2) in xx form -> (...)."""
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return inter / union.clamp(min=eps)


def paired_generalized_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Element-wise gIoU of matched spans a (..., 2) and b (..., 2) in xx form -> (...)."""
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    hull = torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])
    return inter / union.clamp(min=eps) - (hull - union) / hull.clamp(min=eps)
