"""`masra eval --checkpoint` and `masra predict` on a checkpoint trained for a few steps on a toy world.

The strongest check: on videos within the trained length, the checkpoint evaluation reproduces the
predictions and metrics the trainer itself wrote for its best checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _train_world import VIDEO_DIM, make_world, tiny_overrides
from click.testing import CliRunner

from masra.datasets.card import load_card
from masra.datasets.readers import load_queries
from masra.datasets.store_build import find_feature_store
from masra.grounding.config import load_train_config
from masra.grounding.infer.evaluate import load_ground_truth
from masra.grounding.infer.grounder import Grounder
from masra.grounding.metrics import evaluate_submission
from masra.grounding.submission import read_submission
from masra.grounding.train.recipe import run_training
from masra.pipelines.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    card = make_world(root / "data", num_train=8, num_val=6)
    cfg = load_train_config(
        str(card), None, tiny_overrides(card, epochs=2, best_metric="MR-full-mAP"), no_config=True
    )
    run_training(cfg, root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def rescored_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose post-processing blends window scores with saliency (postprocess.saliency_weight)."""
    root = tmp_path_factory.mktemp("world_rescored")
    card = make_world(root / "data", num_train=8, num_val=6)
    overrides = tiny_overrides(
        card, epochs=2, best_metric="MR-full-mAP", postprocess={"saliency_weight": 0.5}
    )
    run_training(load_train_config(str(card), None, overrides, no_config=True), root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def proposals_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose post-processing adds saliency proposals (postprocess.proposals)."""
    root = tmp_path_factory.mktemp("world_proposals")
    card = make_world(root / "data", num_train=8, num_val=6)
    overrides = tiny_overrides(card, epochs=2, best_metric="MR-full-mAP", postprocess={"proposals": True})
    run_training(load_train_config(str(card), None, overrides, no_config=True), root / "run")
    return root / "run"


_RUNS = {"plain": "run", "saliency_rescored": "rescored_run", "proposals": "proposals_run"}


@pytest.mark.parametrize("which", list(_RUNS))
def test_four_ways_in_give_identical_predictions_and_metrics(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The one inference path: the trainer's evaluation, `masra eval --checkpoint`, `Grounder.predict`
    and `masra viz report` give the same windows, saliency and metrics, to the last digit written."""
    run: Path = request.getfixturevalue(_RUNS[which])
    pp = json.loads((run / "best" / "config.json").read_text())["train"]["postprocess"]
    assert pp["saliency_weight"] == (0.5 if which == "saliency_rescored" else 0.0)
    assert pp["proposals"] == (which == "proposals")
    # 1. the trainer's own evaluation of its best checkpoint
    trainer = {p.qid: p for p in read_submission(run / "best" / "predictions_val.jsonl")}
    saved = json.loads((run / "best" / "config.json").read_text())["metrics"]  # the trainer's brief
    # 2. masra eval --checkpoint
    out = tmp_path / "eval"
    res = CliRunner().invoke(
        main, ["eval", "--checkpoint", str(run / "best"), "--split", "val", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "features from the feature store" in res.output
    ours = {p.qid: p for p in read_submission(out / "predictions_val.jsonl")}
    assert ours.keys() == trainer.keys()
    for qid, p in trainer.items():
        assert ours[qid].windows == p.windows, qid
        assert ours[qid].saliency == p.saliency, qid
    metrics = json.loads((out / "metrics_val.json").read_text())
    assert metrics["brief"] == saved
    # 3. Grounder.predict, one query at a time, on the features training read. A batch of one is
    # not padded like the trainer's batches, which moves scores in the 6th decimal (float
    # summation order); spans and metrics stay identical.
    card = load_card(str(run.parent / "data" / "toy.yaml"))
    store = find_feature_store(card, ["val"])
    assert store is not None
    grounder = Grounder.from_pretrained(run / "best", card=card)
    singles = []
    for q in load_queries(card, "val")[0]:
        [g] = grounder.predict(
            np.asarray(store.video(q.vid), np.float32),
            np.asarray(store.text(q.qid), np.float32),
            duration=q.duration,
        )
        row = g.to_prediction(q.qid, q.vid, q.duration, card.clip_len)
        p = trainer[q.qid]
        if which != "proposals":  # proposals are ranked by saliency contrast, whose near-ties may swap
            assert [w[:2] for w in row.windows] == [w[:2] for w in p.windows], q.qid
        np.testing.assert_allclose(np.array(row.windows), np.array(p.windows), atol=2e-5)
        np.testing.assert_allclose(row.saliency, p.saliency, atol=2e-5)
        singles.append(row)
    gts = [g for g in load_ground_truth(card, "val") if g.windows]
    assert evaluate_submission(singles, gts, clip_len=card.clip_len)["brief"] == saved
    # 4. the run report prints the same numbers
    rep = CliRunner().invoke(main, ["viz", "report", "--run", str(run), "--out", str(tmp_path / "rep")])
    assert rep.exit_code == 0, rep.output
    table = (tmp_path / "rep" / "report.md").read_text()
    for key in ("MR-full-mAP", "MR-full-R1@0.5", "HL-min-VeryGood-mAP"):
        assert f"| {key} | {saved[key]:.2f} |" in table, (key, table[:800])


def test_unlabelled_split_gets_predictions_only(run: Path, tmp_path: Path) -> None:
    card_root = run.parent / "data"
    rows = [json.loads(line) for line in (card_root / "annotations" / "val.jsonl").read_text().splitlines()]
    test_file = tmp_path / "test.jsonl"
    keep = ("qid", "query", "vid", "duration")
    test_file.write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in rows))
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(run / "best"), "--split", "test", "--annotations", str(test_file)]
    res = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "has no labels: predictions only" in res.output
    assert len(read_submission(out / "predictions_test.jsonl")) == len(rows)
    assert not (out / "metrics_test.json").exists()


def test_predict_prints_top_k(run: Path, tmp_path: Path) -> None:
    feats = tmp_path / "v.npz"
    np.savez(feats, vis=np.random.default_rng(0).normal(size=(40, VIDEO_DIM)).astype(np.float32))
    tokens = np.random.default_rng(1).normal(size=(4, 16)).astype(np.float32)

    class Encoder:
        def encode_tokens(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
            return [(tokens, tokens.mean(0)) for _ in texts]

    g = Grounder.from_pretrained(run / "best", text_encoder=Encoder())
    [res] = g.predict(
        np.load(feats)["vis"] / np.linalg.norm(np.load(feats)["vis"], axis=1, keepdims=True),
        query_text="x",
        top_k=3,
    )
    assert res.num_windows == 4 and len(res.windows) == 3  # 40 clips, windows of 16 every 8
    # The CLI needs a text encoder for the toy 16-d features: without one it says so.
    out = CliRunner().invoke(
        main, ["predict", "--checkpoint", str(run / "best"), "--video-features", str(feats), "--query", "x"]
    )
    assert out.exit_code != 0
    assert "cannot tell which text encoder" in out.output or "no text encoder" in out.output


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_viz_report(run: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        main, ["viz", "report", "--run", str(run), "--out", str(tmp_path / "rep"), "--examples", "3"]
    )
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| MR-full-mAP | " in text and "![training curves](curves.png)" in text
    assert "(event priors in orange)" in text  # the toy world has prior shards
    assert _is_png(tmp_path / "rep" / "curves.png")
    pngs = sorted((tmp_path / "rep" / "timelines").glob("*.png"))
    assert len(pngs) == 3 and all(_is_png(p) for p in pngs)
    assert all(f"(timelines/{p.name})" in text for p in pngs)


def test_viz_timelines_for_chosen_qids(run: Path, tmp_path: Path) -> None:
    preds = run / "best" / "predictions_val.jsonl"
    card = run.parent / "data" / "toy.yaml"
    qid = str(read_submission(preds)[1].qid)
    args = ["viz", "timelines", "--predictions", str(preds), "--dataset", str(card), "--out", str(tmp_path)]
    res = CliRunner().invoke(main, [*args, "--qid", qid, "--priors-run", "reference"])
    assert res.exit_code == 0, res.output
    assert [p.name for p in tmp_path.glob("*.png")] == [f"qid{qid}.png"]
    res = CliRunner().invoke(main, [*args, "--qid", "99999"])
    assert res.exit_code != 0 and "99999" in res.output


def test_without_out_the_eval_folder_lands_in_the_run_folder(run: Path, tmp_path: Path) -> None:
    rows = [
        json.loads(x) for x in (run.parent / "data" / "annotations" / "val.jsonl").read_text().splitlines()
    ]
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(
        "".join(json.dumps({k: r[k] for k in ("qid", "query", "vid", "duration")}) + "\n" for r in rows)
    )
    for given in (run, run / "best"):  # the run folder itself, or one of its checkpoints
        res = CliRunner().invoke(
            main, ["eval", "--checkpoint", str(given), "--split", "test", "--annotations", str(test_file)]
        )
        assert res.exit_code == 0, res.output
        [folder] = sorted(run.glob("eval_*_test"))
        assert (folder / "predictions_test.jsonl").is_file()
        shutil.rmtree(folder)
    assert not list(run.parent.glob("eval_*"))  # nothing beside the run folder
