"""Hand-computed cases of the standard protocol; the expected numbers are worked out in the comments."""

from __future__ import annotations

import numpy as np
import pytest
from _hl import gt_saliency_matrix, highlight_metrics

from masra.grounding.metrics import (
    MomentArrays,
    QidMismatchError,
    detection_ap,
    evaluate_submission,
    iou_cross,
    iou_paired,
)


def gt(qid: int, windows: list[list[float]], duration: float = 150.0, **sal: list) -> dict:
    return {"qid": qid, "duration": duration, "relevant_windows": windows, **sal}


def pred(qid: int, windows: list[list[float]], saliency: list[float] | None = None) -> dict:
    out: dict = {"qid": qid, "pred_relevant_windows": windows}
    if saliency is not None:
        out["pred_saliency_scores"] = saliency
    return out


def test_iou_examples() -> None:
    a = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    b = np.array([[5.0, 15.0], [10.0, 20.0], [2.0, 4.0]])
    np.testing.assert_allclose(iou_paired(a, b), [5 / 15, 0.0, 0.2])
    np.testing.assert_allclose(iou_cross(a[:1], b)[0], [5 / 15, 0.0, 0.2])


def test_one_window() -> None:
    # IoU([0, 10], [5, 15]) = 5 / 15 = 0.333: a hit at 0.3 only; no AP at any threshold >= 0.5.
    r = evaluate_submission([pred(1, [[0, 10, 0.9]])], [gt(1, [[5, 15]])])
    assert r["full"]["MR-R1"]["0.3"] == 100.0
    assert r["full"]["MR-R1"]["0.35"] == 0.0
    assert r["full"]["MR-mIoU"] == 33.33
    assert r["brief"]["MR-full-mAP"] == 0.0
    exact = evaluate_submission([pred(1, [[5, 15, 0.9]])], [gt(1, [[5, 15]])])
    assert exact["brief"]["MR-full-mAP"] == exact["brief"]["MR-full-R1@0.7"] == 100.0


def test_two_overlapping_gt_windows() -> None:
    # GT g1 = [0, 10], g2 = [5, 15]. Predictions by score: p1 [0, 12], p2 [0, 10], p3 [5, 15].
    # IoU p1: g1 10/12 = .833, g2 7/15 = .467; p2: g1 1, g2 .333; p3: g1 .333, g2 1.
    # t <= 0.8: p1 takes g1; p2's best (g1) is taken and g2 < t: FP; p3 takes g2.
    #   precision 1, .5, .667; recall .5, .5, 1 -> AP = .5 * 1 + .5 * .667 = .8333
    # t >= 0.85: p1 FP; p2 takes g1; p3 takes g2 -> precision 0, .5, .667 -> AP = .6667
    r = evaluate_submission(
        [pred(7, [[0, 12, 0.9], [0, 10, 0.8], [5, 15, 0.7]])], [gt(7, [[0, 10], [5, 15]])]
    )
    mr_map = r["full"]["MR-mAP"]
    assert [mr_map[str(t)] for t in (0.5, 0.8, 0.85, 0.95)] == [83.33, 83.33, 66.67, 66.67]
    assert mr_map["average"] == 78.33  # (7 * .8333 + 3 * .6667) / 10
    assert r["brief"]["MR-full-R1@0.7"] == 100.0  # top-1 [0, 12] vs its best GT g1: .833
    assert r["full"]["MR-R1"]["0.85"] == 0.0


def test_score_ties_keep_file_order() -> None:
    # Equal scores keep the file order (stable sort): a miss listed first costs half the AP, and
    # R1 takes the first window of the file.
    gts = [gt(1, [[20, 30]])]
    miss_first = evaluate_submission([pred(1, [[0, 10, 0.5], [20, 30, 0.5]])], gts)
    hit_first = evaluate_submission([pred(1, [[20, 30, 0.5], [0, 10, 0.5]])], gts)
    assert miss_first["brief"]["MR-full-mAP"] == 50.0
    assert miss_first["brief"]["MR-full-R1@0.5"] == 0.0
    assert hit_first["brief"]["MR-full-mAP"] == 100.0
    assert hit_first["brief"]["MR-full-R1@0.5"] == 100.0


def test_only_first_ten_windows_count() -> None:
    misses = [[100 + i, 101 + i, 0.9 - 0.01 * i] for i in range(10)]
    gts = [gt(1, [[0, 10]])]
    # The hit is 11th in the file: cut before sorting, even with the highest score.
    cut = evaluate_submission([pred(1, [*misses, [0, 10, 0.99]])], gts)
    assert cut["brief"]["MR-full-mAP"] == 0.0
    # The hit 10th: precision 1/10 at recall 1 -> AP 0.1.
    tenth = evaluate_submission([pred(1, [*misses[:9], [0, 10, 0.1]])], gts)
    assert tenth["brief"]["MR-full-mAP"] == 10.0
    # Fewer than 10 windows: the hit 3rd -> AP 1/3.
    third = evaluate_submission([pred(1, [*misses[:2], [0, 10, 0.1]])], gts)
    assert third["brief"]["MR-full-mAP"] == 33.33


def test_many_gt_windows() -> None:
    # 25 GT windows, 10 exact predictions: recall reaches 10/25 at precision 1 -> AP 0.4.
    windows = [[6.0 * i, 6.0 * i + 4] for i in range(25)]
    preds = [[w[0], w[1], 1.0 - 0.01 * i] for i, w in enumerate(windows[:12])]
    r = evaluate_submission([pred(3, preds)], [gt(3, windows)])
    assert r["brief"]["MR-full-mAP"] == 40.0
    assert r["brief"]["MR-short-mAP"] == 40.0  # every window is 4 s long


def test_buckets_and_empty_buckets() -> None:
    # q1 has a short (5 s) and a long (40 s) window; q2 only a short one. No middle window at all.
    gts = [gt(1, [[0, 5], [50, 90]]), gt(2, [[10, 15]])]
    preds = [pred(1, [[50, 90, 0.9], [0, 5, 0.8]]), pred(2, [[10, 15, 0.9]])]
    r = evaluate_submission(preds, gts)
    assert r["scoring"]["bucket_queries"] == {"short": 2, "middle": 0, "long": 1, "full": 2}
    assert r["brief"]["MR-middle-mAP"] == 0.0  # empty bucket: reported as 0, no crash
    assert r["brief"]["MR-long-mAP"] == 100.0
    # short bucket: q1 keeps only [0, 5]; its prediction [50, 90] ranks first and misses -> AP .5;
    # q2 AP 1 -> mean .75.
    assert r["brief"]["MR-short-mAP"] == 75.0
    assert r["brief"]["MR-full-mAP"] == 100.0


def test_query_without_windows_is_a_miss() -> None:
    r = evaluate_submission([pred(1, []), pred(2, [[0, 5, 1.0]])], [gt(1, [[0, 5]]), gt(2, [[0, 5]])])
    assert r["brief"]["MR-full-mAP"] == 50.0
    assert r["brief"]["MR-full-R1@0.5"] == 50.0


def test_gt_saliency_matrix_rules() -> None:
    m = gt_saliency_matrix(11.0, [1, 4], [[4, 3, 2], [1, 1, 1]])  # int(11 / 2) = 5 clips
    assert m.shape == (5, 3)
    assert m[1].tolist() == [4, 3, 2] and m[4].tolist() == [1, 1, 1] and m[0].sum() == 0
    with pytest.raises(ValueError, match="outside the 5 clips"):
        gt_saliency_matrix(11.0, [5], [[1, 1, 1]])


def test_saliency_shorter_and_longer_than_video() -> None:
    # 10 s -> 5 clips; VeryGood positives: clip 1 only (all three annotators).
    g = [gt_saliency_matrix(10.0, [1, 2], [[4, 4, 4], [2, 2, 2]])]
    short = highlight_metrics([[0.1, 0.9]], g)  # padded with 0: clip 1 ranks first
    assert short["HL-min-VeryGood"] == {"HL-mAP": 100.0, "HL-Hit1": 100.0}
    # 6 scores: cut to 5 for AP -> order clip4, 3, 2, 1: the positive 4th -> AP 1/4. Hit1 takes the
    # argmax of the list as submitted (index 5, past the video) -> 0.
    long = highlight_metrics([[0.1, 0.2, 0.3, 0.4, 0.5, 0.99]], g)
    assert long["HL-min-VeryGood"] == {"HL-mAP": 25.0, "HL-Hit1": 0.0}
    # Fair (>= 2): positives clips 1, 2. Order 4, 3, 2, 1, 0: hits at ranks 3 and 4:
    # precision 1/3, 2/4 -> envelope .5, .5 -> AP .5.
    assert long["HL-min-Fair"]["HL-mAP"] == 50.0


def test_saliency_ties_are_one_step() -> None:
    # scores .5 .5 .1, labels 1 0 1: thresholds .5 (P .5, R .5) and .1 (P .667, R 1);
    # envelope .667 at both points -> AP .667 (a rank-by-rank AP would give (1 + .667) / 2).
    g = [np.array([[4.0], [0.0], [4.0]])]
    r = highlight_metrics([[0.5, 0.5, 0.1]], g, {"VeryGood": 4})
    assert r["HL-min-VeryGood"]["HL-mAP"] == 66.67
    assert r["HL-min-VeryGood"]["HL-Hit1"] == 100.0  # first maximum: clip 0


def test_all_negative_and_all_positive_labels() -> None:
    g_neg = [gt_saliency_matrix(6.0, [0], [[1, 1, 1]])]  # no clip reaches 2
    g_pos = [np.full((3, 3), 4.0)]
    assert highlight_metrics([[0.3, 0.2, 0.1]], g_neg)["HL-min-Fair"]["HL-mAP"] == 0.0
    assert highlight_metrics([[0.1, 0.2, 0.3]], g_pos)["HL-min-Fair"]["HL-mAP"] == 100.0


def test_brief_keys_and_order() -> None:
    sal = {"relevant_clip_ids": [0], "saliency_scores": [[4, 4, 4]]}
    r = evaluate_submission([pred(1, [[0, 5, 1.0]], [1.0, 0.0])], [gt(1, [[0, 5]], duration=4.0, **sal)])
    assert list(r["brief"]) == [
        "MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75",
        "MR-long-mAP", "MR-middle-mAP", "MR-short-mAP",
        "HL-min-Fair-mAP", "HL-min-Fair-Hit1", "HL-min-Good-mAP", "HL-min-Good-Hit1",
        "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1",
    ]  # fmt: skip
    assert list(r)[:2] == ["brief", "HL-min-Fair"] and list(r)[-1] == "scoring"
    charades = evaluate_submission([pred(1, [[0, 5, 1.0]])], [gt(1, [[0, 4]])])
    assert charades["brief"]["MR-full-R1@0.3"] == 100.0
    assert charades["brief"]["MR-full-mIoU"] == 80.0
    assert not any(k.startswith("HL") for k in charades["brief"])


def test_qid_mismatch_lists_ids_and_intersection_says_so() -> None:
    gts = [gt(1, [[0, 5]]), gt(2, [[0, 5]])]
    preds = [pred(1, [[0, 5, 1.0]]), pred(3, [[0, 5, 1.0]])]
    with pytest.raises(QidMismatchError, match=r"1 GT qids have no prediction: 2.*not in the GT: 3"):
        evaluate_submission(preds, gts)
    r = evaluate_submission(preds, gts, intersection=True)
    assert r["brief"]["MR-full-mAP"] == 100.0
    assert r["scoring"] == {
        "num_queries": 1,
        "bucket_queries": {"short": 1, "middle": 0, "long": 0, "full": 1},
        "highlight_scored": False,
        "intersection": True,
        "gt_without_prediction": 1,
        "prediction_without_gt": 1,
    }


def test_detection_ap_needs_gt() -> None:
    m = MomentArrays.pack([[[0, 1, 1]]], [[]])
    with pytest.raises(ValueError, match="at least one GT window"):
        detection_ap(m)


def test_gt_clip_id_past_the_video_names_the_qid() -> None:
    sal = {"relevant_clip_ids": [0, 5], "saliency_scores": [[4, 4, 4], [1, 1, 1]]}
    with pytest.raises(ValueError, match=r"GT qid 9: relevant clip id 5 outside the 5 clips"):
        evaluate_submission([pred(9, [[0, 5, 1.0]], [1.0] * 5)], [gt(9, [[0, 5]], duration=10.0, **sal)])
