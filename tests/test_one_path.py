"""After training, one path: `masra eval --checkpoint`, `masra predict`, the app and `masra viz report`
all go through :func:`masra.grounding.infer.run.run_checkpoint` and give the same windows and metrics.

A small fixture is built with `masra fixture` and a tiny checkpoint trained on it. Its feature store
(float16, what training read) is then removed, so every consumer reads the same float32 inputs: the
feature files (eval, the report), the mp4s through the card's extractors (predict, the app; the
extractors reproduce the feature files exactly) and the query texts through the card's text encoder
(the one that wrote the query feature files). (With the store, eval and the report give exactly the
trainer's predictions: tests/test_eval_checkpoint.py.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _fixture_ckpt import build_fixture_checkpoint
from click.testing import CliRunner

import masra.datasets.readers as readers
import masra.grounding.checkpoint as checkpoint_module
from masra.app.predict import predict_for_app
from masra.datasets.card import load_card
from masra.datasets.readers import load_queries
from masra.datasets.types import Query
from masra.grounding.checkpoint import read_checkpoint
from masra.grounding.infer.evaluate import card_scoring, load_ground_truth, score_predictions
from masra.grounding.infer.run import SplitInput, VideoInput, run_checkpoint
from masra.grounding.submission import Prediction, read_submission
from masra.pipelines.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(fixture root, best checkpoint) of a 2-epoch tiny run on a 4 + 2 video fixture, its store gone."""
    root, ckpt = build_fixture_checkpoint(tmp_path_factory.mktemp("onepath"), train_videos=4, val_videos=2)
    assert (root / "store").is_dir()
    shutil.rmtree(root / "store")  # every consumer below reads the float32 files
    return root, ckpt


def _val(root: Path) -> list[Query]:
    return load_queries(load_card("fixture", {"root": str(root)}), "val")[0]


def _by_video(queries: list[Query]) -> dict[str, list[Query]]:
    out: dict[str, list[Query]] = {}
    for q in queries:
        out.setdefault(q.vid, []).append(q)
    return out


def _predict(ckpt: Path, mp4: Path, texts: list[str], top_k: int) -> list[dict[str, Any]]:
    """`masra predict --video --json` rows, one per query."""
    args = ["predict", "--checkpoint", str(ckpt), "--video", str(mp4), "--json", "--top-k", str(top_k)]
    res = CliRunner().invoke(main, [*args, *(x for t in texts for x in ("--query", t))])
    assert res.exit_code == 0, res.output
    rows = [
        json.loads(line[line.index("{") :]) for line in res.output.splitlines() if "pred_relevant" in line
    ]
    assert [r["query"] for r in rows] == texts
    return rows


def _mr_brief(windows: dict[Any, list[list[float]]], root: Path) -> dict[str, float]:
    """The moment-retrieval metrics of windows per qid (no saliency), scored as the card says."""
    card = load_card("fixture", {"root": str(root)})
    preds = [
        Prediction(qid=qid, windows=tuple((float(a), float(b), float(c)) for a, b, c in ws))
        for qid, ws in windows.items()
    ]
    gts = [g for g in load_ground_truth(card, "val") if g.windows]
    return dict(score_predictions(preds, gts, card)["brief"])


def test_eval_predict_app_and_report_give_the_same_windows_and_metrics(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    root, ckpt = world
    queries = _val(root)
    top_k = read_checkpoint(ckpt).postprocess.top_k  # what eval and the report rank by

    # 1. masra eval --checkpoint
    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(ckpt), "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    assert "features from the feature files" in res.output
    evald = {p.qid: p for p in read_submission(tmp_path / "eval" / "predictions_val.jsonl")}
    brief = json.loads((tmp_path / "eval" / "metrics_val.json").read_text())["brief"]
    assert set(evald) == {q.qid for q in queries}

    # 2. masra predict --video, all queries of a video in one batch, as eval batches them
    predicted: dict[Any, list[list[float]]] = {}
    for vid, qs in _by_video(queries).items():
        rows = _predict(ckpt, root / "videos" / f"{vid}.mp4", [q.query for q in qs], top_k)
        predicted.update({q.qid: r["pred_relevant_windows"] for q, r in zip(qs, rows, strict=True)})
    for q in queries:
        assert predicted[q.qid] == [list(w) for w in evald[q.qid].windows], q.qid
    mr = {k: v for k, v in brief.items() if k.startswith("MR-")}
    assert _mr_brief(predicted, root) == mr

    # 3. the app grounds one query at a time: exactly `masra predict` of that query alone. A batch
    # of one pads nothing, which moves scores and span ends in the 4th-6th decimal (float
    # summation order) against a padded batch; the metrics stay identical.
    app: dict[Any, list[list[float]]] = {}
    for q in queries:
        mp4 = root / "videos" / f"{q.vid}.mp4"
        app[q.qid] = predict_for_app(ckpt, mp4, q.query, top_k=top_k, out_dir=tmp_path / "app").windows
        [alone] = _predict(ckpt, mp4, [q.query], top_k)
        assert app[q.qid] == alone["pred_relevant_windows"], q.qid
        np.testing.assert_allclose(np.array(app[q.qid]), np.array(evald[q.qid].windows), atol=2e-4)
    assert _mr_brief(app, root) == mr

    # 4. masra viz report on a copy of the run without the trainer's predictions: the best
    # checkpoint predicts the split through the same entry point
    run = tmp_path / "run"
    shutil.copytree(ckpt.parent, run, symlinks=True)
    (run / "best" / "predictions_val.jsonl").unlink()
    res = CliRunner().invoke(main, ["viz", "report", "--run", str(run), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    table = (tmp_path / "rep" / "report.md").read_text()
    assert "Scored from the feature files" in table
    for key, value in brief.items():
        assert f"| {key} | {value:.2f} |" in table, (key, table[:800])
    outcome = run_checkpoint(run, SplitInput("val"))  # the run folder stands for its best checkpoint
    assert [p.windows for p in outcome.predictions] == [evald[q.qid].windows for q in queries]
    assert outcome.metrics is not None and outcome.metrics["brief"] == brief


def test_eval_reads_the_split_queries_and_the_config_once(
    world: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ckpt = world
    calls = {"queries": 0, "config": 0}
    read_jsonl, read_config = readers.read_qvhighlights_jsonl, checkpoint_module.read_checkpoint_config

    def count_queries(*args: Any, **kwargs: Any) -> Any:
        calls["queries"] += 1
        return read_jsonl(*args, **kwargs)

    def count_config(*args: Any, **kwargs: Any) -> Any:
        calls["config"] += 1
        return read_config(*args, **kwargs)

    monkeypatch.setattr(readers, "read_qvhighlights_jsonl", count_queries)
    monkeypatch.setattr(checkpoint_module, "read_checkpoint_config", count_config)
    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(ckpt), "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    assert calls == {"queries": 1, "config": 1}


def test_the_entry_point_on_one_video_names_the_video_and_its_clips(world: tuple[Path, Path]) -> None:
    root, ckpt = world
    q = _val(root)[0]
    out = run_checkpoint(ckpt, VideoInput((q.query,), vid=q.vid, duration=q.duration), top_k=3)
    [g] = out.groundings
    assert out.metrics is None and out.split is None and out.card.name == "fixture"
    assert len(g.windows) == 3 and g.extra["duration"] == q.duration
    assert g.extra["num_clips"] == len(g.saliency)
    [p] = out.predictions
    assert (p.qid, p.vid, p.query) == (0, q.vid, q.query) and [list(w) for w in p.windows] == g.windows
    with pytest.raises(ValueError, match="exactly one"):
        VideoInput((q.query,), vid=q.vid, video=root / "videos" / f"{q.vid}.mp4")
    with pytest.raises(ValueError, match="dataset and card_overrides"):
        run_checkpoint(read_checkpoint(ckpt), SplitInput("val"), card_overrides={"clip_len": 1.0})


def test_one_function_decides_the_scoring_of_a_card() -> None:
    scored = {
        name: card_scoring(load_card(name)) for name in ("qvhighlights", "fixture", "tacos", "charades")
    }
    assert {k: v.charades_style for k, v in scored.items()} == {
        "qvhighlights": False,
        "fixture": False,
        "tacos": True,
        "charades": True,
    }
    assert scored["charades"].clip_len == 1.0 and scored["qvhighlights"].clip_len == 2.0
