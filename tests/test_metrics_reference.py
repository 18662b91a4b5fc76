"""Cross-check of the vectorised metrics against a plain per-query reference written from the protocol.

The reference below loops over queries, predictions and GT windows one at a time, the way the
protocol text (docs/evaluation.md) describes it. Random submissions use coarse grids so that scores,
IoUs and saliency values tie often.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from _hl import gt_saliency_matrix

from masra.grounding.metrics import (
    MAP_THRESHOLDS,
    R1_THRESHOLDS,
    MomentArrays,
    detection_ap,
    evaluate_submission,
    saliency_ap,
    top1_iou,
)

# ---------------------------------------------------------------- reference (one query at a time)


def ref_iou(a: list[float], b: list[float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union


def ref_hull_iou(a: list[float], b: list[float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    hull = max(a[1], b[1]) - min(a[0], b[0])
    return inter / hull if hull != 0 else 0.0


def ref_ap(preds: list[list[float]], gts: list[list[float]], thr: float) -> float:
    """Detection AP of one query: first 10 windows, stable sort by score, greedy matching, VOC 2011."""
    kept = sorted(preds[:10], key=lambda w: -w[2])
    if not kept:
        return 0.0
    locked = [False] * len(gts)
    tp = []
    for w in kept:
        ious = np.array([ref_iou(w, g) for g in gts])
        hit = 0
        for j in np.argsort(ious)[::-1]:  # best IoU first, as the standard tool visits them
            if ious[j] < thr:
                break
            if locked[j]:
                continue
            locked[j] = True
            hit = 1
            break
        tp.append(hit)
    precision, recall, n_tp = [], [], 0
    for i, h in enumerate(tp):
        n_tp += h
        precision.append(n_tp / (i + 1))
        recall.append(n_tp / len(gts))
    mprec = [0.0, *precision, 0.0]
    mrec = [0.0, *recall, 1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def ref_top1_iou(preds: list[list[float]], gts: list[list[float]]) -> float:
    if not preds:
        return 0.0
    top = preds[0]
    best = int(np.argmax([ref_iou(top, g) for g in gts]))
    return ref_hull_iou(top, gts[best])


def ref_hl_ap(scores: list[float], labels: list[int]) -> float:
    """AP over distinct score thresholds (ties = one step), precision made monotone, mean at recall changes."""
    if all(y == 0 for y in labels):
        return 0.0
    if all(y == 1 for y in labels):
        return 1.0
    npos = sum(labels)
    points = []  # (precision, recall) per distinct threshold, highest threshold first
    for t in sorted(set(scores), reverse=True):
        chosen = [y for s, y in zip(scores, labels, strict=True) if s >= t]
        points.append((sum(chosen) / len(chosen), sum(chosen) / npos))
    values, prev_recall = [], 0.0
    for k, (_, r) in enumerate(points):
        if r != prev_recall:
            values.append(max(p for p, _ in points[k:]))
        prev_recall = r
    return sum(values) / len(values)


def ref_pad(pred: list[float], n: int) -> list[float]:
    return (pred + [0.0] * n)[:n]


def ref_hit1(pred: list[float], gt: np.ndarray, m: int) -> float:
    top = int(np.argmax(pred))
    return float(top < len(gt) and bool((gt[top] >= m).any()))


# ---------------------------------------------------------------- random submissions


def random_case(rng: random.Random, n_queries: int) -> tuple[list[dict], list[dict]]:
    preds, gts = [], []
    for qid in range(n_queries):
        duration = rng.choice([20.0, 60.0, 150.0, 152.0])
        grid = rng.choice([1.0, 2.0, 5.0])
        n_gt = rng.choice([1, 1, 2, 3, 6, 12])
        windows = []
        for _ in range(n_gt):
            s = rng.randrange(0, int(duration / grid) - 1) * grid
            e = min(duration, s + grid * rng.randint(1, int(40 / grid) + 1))
            windows.append([s, e])
        n_clips = int(duration / 2)
        ids = sorted(rng.sample(range(n_clips), rng.randint(1, min(n_clips, 20))))
        gts.append(
            {
                "qid": qid,
                "duration": duration,
                "relevant_windows": windows,
                "relevant_clip_ids": ids,
                "saliency_scores": [[rng.randint(0, 4) for _ in range(3)] for _ in ids],
            }
        )
        pw = []
        for _ in range(rng.randint(1, 14)):
            s = rng.randrange(0, int(duration / grid)) * grid
            e = min(duration, s + grid * rng.randint(0, int(40 / grid) + 1))
            pw.append([s, e, rng.choice([0.1, 0.2, 0.3, 0.5])])
        if rng.random() < 0.7:
            pw.sort(key=lambda w: -w[2])
        if rng.random() < 0.3:  # copy a GT window: exact matches and IoU ties between GT windows
            g = rng.choice(windows)
            pw.insert(rng.randrange(len(pw) + 1), [g[0], g[1], 0.3])
        n_sal = max(1, n_clips + rng.randint(-5, 5))
        preds.append(
            {
                "qid": qid,
                "pred_relevant_windows": pw,
                "pred_saliency_scores": [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(n_sal)],
            }
        )
    return preds, gts


@pytest.fixture(scope="module")
def cases() -> tuple[list[dict], list[dict]]:
    return random_case(random.Random(1234), 300)


def test_detection_ap_equals_reference(cases: tuple[list[dict], list[dict]]) -> None:
    preds, gts = cases
    m = MomentArrays.pack([p["pred_relevant_windows"] for p in preds], [g["relevant_windows"] for g in gts])
    got = detection_ap(m, MAP_THRESHOLDS)
    want = np.array(
        [
            [ref_ap(p["pred_relevant_windows"], g["relevant_windows"], t) for t in MAP_THRESHOLDS]
            for p, g in zip(preds, gts, strict=True)
        ]
    )
    assert want.std() > 0.1  # the random cases cover a spread of APs, not a constant
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


def test_top1_iou_equals_reference(cases: tuple[list[dict], list[dict]]) -> None:
    preds, gts = cases
    m = MomentArrays.pack([p["pred_relevant_windows"] for p in preds], [g["relevant_windows"] for g in gts])
    want = [
        ref_top1_iou(p["pred_relevant_windows"], g["relevant_windows"])
        for p, g in zip(preds, gts, strict=True)
    ]
    np.testing.assert_allclose(top1_iou(m), want, atol=1e-12, rtol=0)


def test_saliency_ap_equals_reference(cases: tuple[list[dict], list[dict]]) -> None:
    preds, gts = cases
    full = [gt_saliency_matrix(g["duration"], g["relevant_clip_ids"], g["saliency_scores"]) for g in gts]
    n = np.array([len(f) for f in full])
    c = n.max()
    scores = np.zeros((len(preds), c))
    for i, p in enumerate(preds):
        scores[i, : n[i]] = ref_pad(p["pred_saliency_scores"], int(n[i]))
    valid = np.arange(c)[None, :] < n[:, None]
    gt = np.zeros((len(preds), c, 3))
    for i, f in enumerate(full):
        gt[i, : len(f)] = f
    for m in (2, 3, 4):
        got = saliency_ap(scores, valid, (gt >= m) & valid[..., None])
        want = [
            [
                ref_hl_ap(ref_pad(p["pred_saliency_scores"], len(f)), [int(x >= m) for x in f[:, a]])
                for a in range(3)
            ]
            for p, f in zip(preds, full, strict=True)
        ]
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


def ref_brief(preds: list[dict], gts: list[dict]) -> dict[str, float]:
    """The brief block from the per-query reference, buckets and rounding included."""

    def bucket(lo: float | None, hi: float | None) -> tuple[list[list[list[float]]], list[list[list[float]]]]:
        ps, gs = [], []
        for p, g in zip(preds, gts, strict=True):
            keep = [w for w in g["relevant_windows"] if lo is None or lo < w[1] - w[0] <= hi]
            if keep:
                ps.append(p["pred_relevant_windows"])
                gs.append(keep)
        return ps, gs

    def pct(x: float) -> float:
        return float(f"{100 * x:.2f}")

    out: dict[str, float] = {}
    for name, (lo, hi) in {
        "full": (None, None),
        "short": (0, 10),
        "middle": (10, 30),
        "long": (30, 150),
    }.items():
        ps, gs = bucket(lo, hi)
        if not ps:
            out[f"MR-{name}-mAP"] = 0.0
            continue
        per_t = [np.mean([ref_ap(p, g, t) for p, g in zip(ps, gs, strict=True)]) for t in MAP_THRESHOLDS]
        out[f"MR-{name}-mAP"] = pct(float(np.mean(per_t)))
        if name == "full":
            out["MR-full-mAP@0.5"], out["MR-full-mAP@0.75"] = pct(per_t[0]), pct(per_t[5])
            ious = np.array([ref_top1_iou(p, g) for p, g in zip(ps, gs, strict=True)])
            for t in R1_THRESHOLDS:
                out[f"MR-full-R1@{t}"] = pct(float(np.mean(ious >= t)))
    for m, label in ((2, "Fair"), (3, "Good"), (4, "VeryGood")):
        aps, hits = [], []
        for p, g in zip(preds, gts, strict=True):
            full = gt_saliency_matrix(g["duration"], g["relevant_clip_ids"], g["saliency_scores"])
            padded = ref_pad(p["pred_saliency_scores"], len(full))
            aps += [ref_hl_ap(padded, [int(x >= m) for x in full[:, a]]) for a in range(3)]
            hits.append(ref_hit1(p["pred_saliency_scores"], full, m))
        out[f"HL-min-{label}-mAP"] = pct(float(np.mean(aps)))
        out[f"HL-min-{label}-Hit1"] = pct(float(np.mean(hits)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brief_equals_reference(seed: int) -> None:
    preds, gts = random_case(random.Random(seed), 60)
    got = evaluate_submission(preds, gts)
    want = ref_brief(preds, gts)
    for key, value in got["brief"].items():
        assert value == want[key], key
    for t in R1_THRESHOLDS:
        assert got["full"]["MR-R1"][str(t)] == want[f"MR-full-R1@{t}"]


def test_hl_ap_equals_sklearn_curve_procedure() -> None:
    """The AP built on scikit-learn's precision_recall_curve the way the standard tool builds it."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    n_cases, c = 200, 40
    scores = rng.choice([0.0, 0.1, 0.5, 0.7, 1.0], size=(n_cases, c))
    labels = rng.random((n_cases, c, 1)) < rng.uniform(0.05, 0.6, size=(n_cases, 1, 1))
    valid = np.ones((n_cases, c), dtype=bool)
    got = saliency_ap(scores, valid, labels)[:, 0]
    for i in range(n_cases):
        y = labels[i, :, 0].astype(int)
        if y.min() == y.max():
            want = float(y[0])
        else:
            precision, recall, _ = metrics.precision_recall_curve(y, scores[i])
            recall = recall.astype(np.float32)
            precision = np.maximum.accumulate(precision)  # best precision at any higher recall
            want = float(np.mean(precision[np.where(np.diff(recall))]))
        assert got[i] == pytest.approx(want, abs=1e-9), i
