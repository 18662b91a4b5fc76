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
    >>> paired_generalized_iou(torch.tensor([0.0, 0.4]), torch.tensor([0.2, 0.6]))
    tensor(0.3333)
    >>> paired_generalized_iou(torch.tensor([0.0, 0.2]), torch.tensor([0.6, 0.8]))
    tensor(-0.5000)

The tests hold the inverse conversion and the pairwise IoU / gIoU these are checked against
(``tests/_spans.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["paired_generalized_iou", "paired_iou", "span_cxw_to_xx"]


def span_cxw_to_xx(spans: Tensor) -> Tensor:
    """(..., 2) (center, width) -> (..., 2) (start, end)."""
    center, width = spans.unbind(-1)
    return torch.stack([center - 0.5 * width, center + 0.5 * width], dim=-1)


def _inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union lengths of spans a (..., 2) and b (..., 2) in xx form (broadcast)."""
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return inter, union


def paired_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Element-wise IoU of spans a (..., 2) and b (..., 2) in xx form (broadcast) -> (...)."""
    inter, union = _inter_union(a, b)
    return inter / union.clamp(min=eps)


def paired_generalized_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Element-wise gIoU of matched spans a (..., 2) and b (..., 2) in xx form -> (...)."""
    inter, union = _inter_union(a, b)
    hull = torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])
    return inter / union.clamp(min=eps) - (hull - union) / hull.clamp(min=eps)
