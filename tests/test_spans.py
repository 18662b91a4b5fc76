"""masra/grounding/spans.py: round trips and hand-computed IoU / gIoU cases (references: tests/_spans.py)."""

from __future__ import annotations

import pytest
import torch
from _spans import generalized_temporal_iou, span_xx_to_cxw, temporal_iou

from masra.grounding.spans import paired_generalized_iou, paired_iou, span_cxw_to_xx


def test_round_trip_both_ways() -> None:
    gen = torch.Generator().manual_seed(0)
    xx = torch.rand(5, 7, 2, generator=gen).sort(-1).values
    torch.testing.assert_close(span_cxw_to_xx(span_xx_to_cxw(xx)), xx)
    cxw = torch.rand(13, 2, generator=gen)
    torch.testing.assert_close(span_xx_to_cxw(span_cxw_to_xx(cxw)), cxw)


def test_conversion_hand_case() -> None:
    torch.testing.assert_close(span_cxw_to_xx(torch.tensor([0.5, 0.2])), torch.tensor([0.4, 0.6]))
    torch.testing.assert_close(span_xx_to_cxw(torch.tensor([0.1, 0.5])), torch.tensor([0.3, 0.4]))


@pytest.mark.parametrize(
    ("a", "b", "iou", "giou"),
    [
        ((0.0, 0.4), (0.2, 0.6), 0.2 / 0.6, 0.2 / 0.6),  # overlap; hull == union
        ((0.0, 0.2), (0.6, 0.8), 0.0, -0.5),  # disjoint: union 0.4, hull 0.8
        ((0.1, 0.5), (0.1, 0.5), 1.0, 1.0),  # identical
        ((0.0, 1.0), (0.25, 0.5), 0.25, 0.25),  # nested
        ((0.0, 0.2), (0.2, 0.4), 0.0, 0.0),  # touching
    ],
)
def test_iou_and_giou_hand_cases(
    a: tuple[float, float], b: tuple[float, float], iou: float, giou: float
) -> None:
    ta, tb = torch.tensor([a]), torch.tensor([b])
    assert temporal_iou(ta, tb).item() == pytest.approx(iou, abs=1e-6)
    assert generalized_temporal_iou(ta, tb).item() == pytest.approx(giou, abs=1e-6)
    assert paired_iou(ta[0], tb[0]).item() == pytest.approx(iou, abs=1e-6)
    assert paired_generalized_iou(ta[0], tb[0]).item() == pytest.approx(giou, abs=1e-6)


def test_pairwise_matches_paired_and_is_symmetric() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(6, 2, generator=gen).sort(-1).values
    b = torch.rand(4, 2, generator=gen).sort(-1).values
    full_iou, full_giou = temporal_iou(a, b), generalized_temporal_iou(a, b)
    assert full_iou.shape == (6, 4)
    ia, ib = torch.meshgrid(torch.arange(6), torch.arange(4), indexing="ij")
    torch.testing.assert_close(paired_iou(a[ia], b[ib]), full_iou)
    torch.testing.assert_close(paired_generalized_iou(a[ia], b[ib]), full_giou)
    torch.testing.assert_close(temporal_iou(b, a), full_iou.T)
    assert bool(((full_giou <= full_iou + 1e-6) & (full_giou >= -1)).all())


def test_degenerate_spans_stay_finite() -> None:
    point = torch.tensor([[0.3, 0.3]])
    assert torch.isfinite(generalized_temporal_iou(point, point)).all()
    assert torch.isfinite(paired_iou(point, point)).all()
