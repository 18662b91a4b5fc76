"""Prior quality report: recall at IoU thresholds, event and caption statistics, failure reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masra.datasets.types import Query
from masra.prior_gen.report import format_report, prior_report, span_iou
from masra.priors.schema import PRIOR_SCHEMA, SCHEMA_VERSION
from masra.priors.shards import rows_to_table, write_table_atomic


def row(
    vid: str, duration: float, events: list[tuple[float, float]], captions: list[str], status: str, error=None
):
    return {
        "video_id": vid,
        "duration": duration,
        "clip_len": 2.0,
        "num_clips": len(captions),
        "events": [{"start": s, "end": e, "text": f"e{i}"} for i, (s, e) in enumerate(events)],
        "clip_captions": captions,
        "status": status,
        "error": error,
        "source": "mllm",
        "model_id": "m",
        "backend": "b",
        "prompt_version": "p",
        "tokens_in": 100,
        "tokens_out": 10,
        "schema_version": SCHEMA_VERSION,
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rows = [
        row("a", 10.0, [(0.0, 4.0), (4.0, 10.0)], ["x"] * 5, "ok"),
        row(
            "b", 10.0, [(2.0, 6.0)], ["x", "", "x", "x", "x"], "partial", "captions: 1/5 clip captions empty"
        ),
        row("c", 8.0, [], [""] * 4, "failed", "cannot open c.mp4: Invalid data found when processing input"),
        row("d", 8.0, [], [""] * 4, "failed", "video file not found"),
    ]
    write_table_atomic(rows_to_table(rows, PRIOR_SCHEMA), tmp_path / "part-000of001-00000.parquet")
    return tmp_path


def test_span_iou() -> None:
    np.testing.assert_allclose(
        span_iou((0.0, 4.0), np.array([[0.0, 4.0], [2.0, 6.0], [5.0, 6.0]])), [1.0, 1 / 3, 0.0]
    )
    assert span_iou((0.0, 1.0), np.zeros((0, 2))).shape == (0,)


def test_report_numbers(run_dir: Path) -> None:
    queries = [
        Query(1, "q", "a", 10.0, ((0.0, 4.5),)),  # IoU 4/4.5 = 0.89 with event [0, 4]
        Query(2, "q", "a", 10.0, ((7.0, 9.0),)),  # IoU 2/6 = 0.33 with [4, 10]: a hit at 0.3 only
        Query(3, "q", "b", 10.0, ((5.0, 9.0),)),  # IoU 1/7 with [2, 6]: a miss
        Query(4, "q", "c", 8.0, ((0.0, 2.0),)),  # no events: a miss
        Query(5, "q", "e", 8.0, ((0.0, 2.0),)),  # no prior row: not counted in recall
        Query(6, "q", "a", 10.0, ()),  # unlabelled
    ]
    rep = prior_report(run_dir, queries)
    assert rep["recall"]["windows"] == 4
    assert rep["recall"]["iou@0.3"] == pytest.approx(2 / 4)
    assert rep["recall"]["iou@0.5"] == pytest.approx(1 / 4)
    # one span over the whole video: IoU 0.45, 0.2, 0.4, 0.25
    assert rep["recall"]["whole_video_recall"] == {"iou@0.3": pytest.approx(2 / 4), "iou@0.5": 0.0}
    v = rep["videos"]
    assert v["with_priors"] == 4 and v["annotated"] == 4 and v["annotated_with_priors"] == 3
    assert v["status"] == {"ok": 1, "partial": 1, "failed": 2}
    assert v["failure_reasons"] == {
        "cannot open #: Invalid data found when processing input": 1,
        "video file not found": 1,
    }
    assert v["partial_reasons"] == {"captions: #/# clip captions empty": 1}
    e = rep["events"]
    assert e["mean_per_video"] == pytest.approx(3 / 4) and e["videos_without_events"] == 2
    assert e["span_s_mean"] == pytest.approx((4 + 6 + 4) / 3) and e["span_s_median"] == pytest.approx(4.0)
    c = rep["captions"]
    assert (
        c["clips"] == 18
        and c["clip_coverage"] == pytest.approx(9 / 18)
        and c["videos_fully_captioned"] == 0.25
    )
    assert rep["tokens"] == {"mean_in": 100.0, "mean_out": 10.0}
    text = format_report(rep)
    assert (
        "recall@IoU0.5" in text
        and "0.250 (whole video 0.000)" in text
        and "failed: video file not found" in text
    )
