"""Timelines and example picking, without a trained model."""

from __future__ import annotations

from pathlib import Path

from masra.viz.curves import curves_figure, group_terms
from masra.viz.report import pick_examples, render_curves
from masra.viz.timeline import TimelineData, render_timeline, top1_iou_of


def item(qid: int, pred: tuple[float, float]) -> TimelineData:
    return TimelineData(qid, "q", 60.0, 2.0, gt_windows=[(10.0, 20.0)], pred_windows=[(*pred, 0.9)])


def test_top1_iou_and_pick_examples() -> None:
    items = [item(1, (10, 20)), item(2, (40, 50)), item(3, (10, 15)), item(4, (12, 20)), item(5, (0, 60))]
    assert [round(top1_iou_of(d), 3) for d in items] == [1.0, 0.0, 0.5, 0.8, 0.167]
    assert [d.qid for d in pick_examples(items, 4)] == [1, 4, 2, 5]  # two best, then two worst
    assert [d.qid for d in pick_examples(items, 1)] == [1]
    assert pick_examples(items, 0) == []


def test_render_timeline_with_everything(tmp_path: Path) -> None:
    d = TimelineData(
        7, "a person opens the fridge and takes out milk", 31.0, 2.0,
        gt_windows=[(4.0, 10.0), (20.0, 24.0)],
        pred_windows=[(4.0, 11.0, 0.8), (19.0, 25.0, 0.5), (0.0, 31.0, 0.1)],
        saliency=[0.1 * i for i in range(16)], gt_saliency=[0.0] * 2 + [1.0] * 3 + [0.0] * 11,
        events=[(0.0, 8.0, "opens the fridge"), (8.0, 16.0, "takes out a bottle of milk and closes the door")],
        vid="abc",
    )  # fmt: skip
    out = render_timeline(d, tmp_path / "sub" / "t.png", top_k=2)
    assert out.read_bytes()[:4] == b"\x89PNG"
    bare = render_timeline(TimelineData(8, "", 10.0, 1.0), tmp_path / "bare.png")  # no windows, no saliency
    assert bare.stat().st_size > 1000


def test_curves_need_data(tmp_path: Path) -> None:
    assert render_curves([], [], tmp_path / "c.png") is None
    log = [{"epoch": 0, "step": s, "loss": 1.0 / s, "loss_span": 0.5 / s} for s in range(1, 5)]
    metrics = [{"epoch": e, "MR-full-mAP": 10.0 * e} for e in range(1, 3)]
    assert render_curves(log, metrics, tmp_path / "c.png") == tmp_path / "c.png"


TERMS = ["span_l1", "span_giou", "label", "saliency_margin", "saliency_rank", "saliency_neg",
         "esta_event", "esta_clip", "sge", "lrca"]  # fmt: skip


def test_curves_have_total_evaluation_and_one_panel_per_term_grouped() -> None:
    """13 loss terms (3 of them auxiliary copies) -> a total panel, an evaluation panel and 10 term panels."""
    import matplotlib.pyplot as plt

    log = []
    for s in range(1, 6):
        row: dict[str, float] = {"epoch": 0, "step": s, "loss": 20.0 / s}
        row |= {f"loss_{t}": 1.0 / (s * (i + 1)) for i, t in enumerate(TERMS)}
        row |= {f"loss_{t}_0": 1.1 / s for t in TERMS[:3]}
        row["loss_saliency_neg"] = 0.5 / 10**s  # spans four decades: log scale
        log.append(row)
    groups = group_terms(set(log[0]))
    assert list(groups) == ["DETR", "saliency", "priors"]
    assert list(groups["DETR"]) == ["span_l1", "span_giou", "label"]
    assert groups["DETR"]["label"] == ["loss_label_0"] and groups["priors"]["sge"] == []
    fig = curves_figure(log, [{"epoch": 1, "MR-full-mAP": 12.0}])
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[:2] == ["total loss (weighted sum)", "evaluation"]
        assert titles[2:] == [
            "DETR: span_l1 (+1 aux)", "DETR: span_giou (+1 aux)", "DETR: label (+1 aux)",
            "saliency: saliency_margin", "saliency: saliency_neg", "saliency: saliency_rank",
            "priors: esta_clip", "priors: esta_event", "priors: lrca", "priors: sge",
        ]  # fmt: skip
        scales = {ax.get_title(): ax.get_yscale() for ax in fig.axes}
        assert scales["saliency: saliency_neg"] == "log" and scales["total loss (weighted sum)"] == "linear"
        assert len(fig.axes[2].lines) == 2  # the term and its auxiliary copy
    finally:
        plt.close(fig)


def test_an_unlabelled_timeline_has_no_gt_row(tmp_path: Path) -> None:
    """A raw video's prediction has no ground truth: its timeline drops the GT row (one row shorter)."""
    from PIL import Image

    from masra.viz.timeline import TimelineData, render_timeline

    common = dict(
        qid=1, query="q", duration=20.0, clip_len=2.0, pred_windows=[(2.0, 6.0, 0.9)], saliency=[0.1] * 10
    )
    with_gt = render_timeline(TimelineData(**common), tmp_path / "a.png", dpi=100)  # type: ignore[arg-type]
    without = render_timeline(TimelineData(**common, labelled=False), tmp_path / "b.png", dpi=100)  # type: ignore[arg-type]
    h_gt, h_none = Image.open(with_gt).size[1], Image.open(without).size[1]
    assert h_gt - h_none == 32  # one row of 0.32 in of figure height, at 100 dpi
