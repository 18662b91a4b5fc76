"""Post-processing: spans -> ranked windows in seconds, temporal NMS, saliency lists, prediction rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masra.grounding.config import PostprocessConfig
from masra.grounding.infer.decode import (
    foreground_prob,
    predictions_from_outputs,
    saliency_lists,
    saliency_rescore,
    spans_to_windows,
    temporal_nms,
    window_iou,
)


def test_spans_to_windows_hand_case() -> None:
    # grid = 10 clips * 2 s = 20 s; span 0: [0.4, 0.6] -> [8, 12]; span 1: [-0.1, 0.3] -> clamped [0, 6].
    out = spans_to_windows(
        np.array([[0.5, 0.2], [0.1, 0.4]]), np.array([0.3, 0.9]), num_clips=10, clip_len=2.0, duration=19.0
    )
    assert out == [[0.0, 6.0, 0.9], [8.0, 12.0, 0.3]]


def test_windows_clamped_to_duration_and_sorted() -> None:
    # span [0.9, 1.1] of a 20 s grid ends past the 19 s duration.
    out = spans_to_windows(
        torch.tensor([[1.0, 0.2], [0.25, 0.1], [0.6, 0.2]]),
        torch.tensor([0.2, 0.5, 0.7]),
        num_clips=10,
        clip_len=2.0,
        duration=19.0,
    )
    assert [w[2] for w in out] == [0.7, 0.5, 0.2]
    assert out[-1][:2] == [18.0, 19.0]
    assert all(0.0 <= w[0] <= w[1] <= 19.0 for w in out)


def test_round_trip_from_normalised_gt() -> None:
    # A GT window [6 s, 14 s] on a 15-clip, 2 s grid, normalised then converted back.
    grid = 15 * 2.0
    st, ed = 6.0 / grid, 14.0 / grid
    span = torch.tensor([[(st + ed) / 2, ed - st]])
    out = spans_to_windows(span, torch.tensor([1.0]), num_clips=15, clip_len=2.0, duration=30.0)
    assert out[0][0] == pytest.approx(6.0, abs=1e-4) and out[0][1] == pytest.approx(14.0, abs=1e-4)


def test_snap_rounds_outward_to_clip_boundaries() -> None:
    span = torch.tensor([[0.5, 0.23]])  # 20 s grid: [7.7, 12.3]
    out = spans_to_windows(span, torch.tensor([1.0]), num_clips=10, clip_len=2.0, duration=20.0, snap=True)
    assert out[0][:2] == [6.0, 14.0]


def test_top_k_and_nms() -> None:
    spans = torch.tensor([[0.5, 0.2], [0.51, 0.2], [0.1, 0.1], [0.9, 0.1]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    plain = spans_to_windows(spans, scores, num_clips=10, clip_len=2.0, duration=20.0, top_k=2)
    assert [w[2] for w in plain] == [0.9, 0.8]
    nms = spans_to_windows(spans, scores, num_clips=10, clip_len=2.0, duration=20.0, top_k=2, nms_iou=0.5)
    assert [w[2] for w in nms] == [0.9, 0.7]


def test_temporal_nms_hand_case() -> None:
    kept = temporal_nms([[20, 30, 0.5], [1, 10, 0.8], [0, 10, 0.9]], iou=0.7)
    assert kept == [[0.0, 10.0, 0.9], [20.0, 30.0, 0.5]]
    # IoU([0,10],[1,10]) = 0.9 > 0.95 is false: both kept at a looser threshold.
    assert len(temporal_nms([[0, 10, 0.9], [1, 10, 0.8]], iou=0.95)) == 2
    assert window_iou([0, 10], [5, 15]) == pytest.approx(5 / 15)
    with pytest.raises(ValueError, match="NMS iou"):
        temporal_nms([], iou=0.0)


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="spans but"):
        spans_to_windows(np.zeros((3, 2)), np.zeros(2), num_clips=4, clip_len=2.0, duration=8.0)
    with pytest.raises(ValueError, match="num_clips"):
        spans_to_windows(np.zeros((1, 2)), np.zeros(1), num_clips=0, clip_len=2.0, duration=8.0)


def test_foreground_prob_uses_class_zero() -> None:
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]])
    p = foreground_prob(logits)
    assert p.shape == (1, 2) and p[0, 0] > 0.5 > p[0, 1]


def test_saliency_lists_and_rows() -> None:
    sal = torch.arange(12, dtype=torch.float32).reshape(2, 6)
    assert saliency_lists(sal, [3, 6]) == [[0.0, 1.0, 2.0], [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]]
    meta = [
        {"qid": 1, "query": "a", "vid": "v1", "duration": 6.0, "clip_len": 2.0, "num_clips": 3},
        {"qid": "x", "query": "b", "vid": "v2", "duration": 11.0, "clip_len": 2.0, "num_clips": 6},
    ]
    prob = torch.tensor([[0.2, 0.8], [0.6, 0.1]])
    spans = torch.tensor([[[0.5, 0.5], [0.25, 0.5]], [[0.5, 1.0], [0.1, 0.1]]])
    rows = predictions_from_outputs(prob, spans, sal, meta, PostprocessConfig(top_k=1))
    assert [r["qid"] for r in rows] == [1, "x"]
    assert rows[0]["pred_relevant_windows"] == [[0.0, 3.0, 0.8]]
    assert rows[1]["pred_relevant_windows"] == [[0.0, 11.0, 0.6]]  # [0, 12] clamped to 11 s
    assert len(rows[0]["pred_saliency_scores"]) == 3 and len(rows[1]["pred_saliency_scores"]) == 6
    with pytest.raises(ValueError, match="batch sizes differ"):
        predictions_from_outputs(prob, spans, sal, meta[:1])


def test_saliency_rescore_blends_and_reranks() -> None:
    windows = [[0.0, 2.0, 0.9], [4.0, 6.0, 0.8], [1.0, 5.0, 0.1]]
    sal = [0.0, 1.0, 3.0]  # normalised: 0, 1/3, 1
    assert saliency_rescore(windows, sal, clip_len=2.0, weight=0.0) == sorted(windows, key=lambda w: -w[2])
    out = saliency_rescore(windows, sal, clip_len=2.0, weight=0.5)
    assert out[0] == [4.0, 6.0, 0.9]  # 0.5 * 0.8 + 0.5 * 1
    assert out[1] == [0.0, 2.0, 0.45]  # 0.5 * 0.9 + 0.5 * 0
    assert out[2][2] == pytest.approx(0.5 * 0.1 + 0.5 * (0 + 1 / 3 + 1) / 3, abs=1e-6)  # clips 0-2
    with pytest.raises(ValueError, match="saliency weight"):
        saliency_rescore(windows, sal, clip_len=2.0, weight=1.5)


def test_rows_with_saliency_weight_rerank_before_top_k() -> None:
    meta = [{"qid": 1, "query": "a", "vid": "v", "duration": 20.0, "clip_len": 2.0, "num_clips": 10}]
    prob = torch.tensor([[0.9, 0.6]])
    spans = torch.tensor([[[0.1, 0.2], [0.9, 0.2]]])  # [0, 4] s and [16, 20] s
    sal = torch.zeros(1, 10)
    sal[0, 8:] = 5.0  # the video's salient clips are at the end
    plain = predictions_from_outputs(prob, spans, sal, meta, PostprocessConfig(top_k=1))
    assert plain[0]["pred_relevant_windows"][0][:2] == [0.0, 4.0]
    blended = predictions_from_outputs(
        prob, spans, sal, meta, PostprocessConfig(top_k=1, saliency_weight=0.5)
    )
    assert blended[0]["pred_relevant_windows"] == [[16.0, 20.0, 0.8]]


def test_loose_postprocess_keywords_still_work_with_a_deprecation_warning() -> None:
    """The five keywords of older callers map onto the one PostprocessConfig argument."""
    meta = [{"qid": 1, "query": "a", "vid": "v", "duration": 20.0, "clip_len": 2.0, "num_clips": 10}]
    prob = torch.tensor([[0.9, 0.6]])
    spans = torch.tensor([[[0.1, 0.2], [0.9, 0.2]]])
    sal = torch.zeros(1, 10)
    sal[0, 8:] = 5.0
    with pytest.warns(DeprecationWarning, match=r"postprocess=PostprocessConfig"):
        old = predictions_from_outputs(prob, spans, sal, meta, top_k=1, saliency_weight=0.5)
    assert old == predictions_from_outputs(
        prob, spans, sal, meta, PostprocessConfig(top_k=1, saliency_weight=0.5)
    )
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        predictions_from_outputs(prob, spans, sal, meta, topk=1)
