"""Training with prior events as queries on the toy world (``make_world(event_texts=True)``: event
texts that read like the queries, their query features in the prior run's text cache).

From priors alone (MASRA and the baseline), pseudo-queries joining labelled batches (the labelled
stream unchanged), exact resume, and a card without a train annotation file."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from _train_world import make_world, tiny_overrides

from masra.grounding.config import load_train_config
from masra.grounding.train.recipe import run_training

PSEUDO = {"pseudo_queries.weight": 1.0, "pseudo_queries.generic_min_videos": 3}


def _train(card: Path, out: Path, **over: object) -> dict[str, object]:
    cfg = load_train_config(str(card), None, tiny_overrides(card, **over), no_config=True)
    return run_training(cfg, out)


def _losses(run: Path) -> list[dict[str, float]]:
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("pq") / "w", num_train=16, num_val=6, event_texts=True)


@pytest.mark.parametrize("masra", [True, False], ids=["masra", "baseline"])
def test_trains_from_priors_alone(
    world: Path, tmp_path: Path, masra: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="masra"):
        summary = _train(world, tmp_path / "run", label_fraction=0.0, masra=masra, **PSEUDO)
    info = summary["pseudo_queries"]
    assert isinstance(info, dict)
    assert info["priors_only"] and info["labelled_queries"] == 0 and info["per_step"] == 8
    report = summary["data"]["train"]["pseudo_queries"]  # type: ignore[index]
    # Each train video: its event, and a background line before it unless it starts the video.
    assert report["videos"] == 16 and report["kept"] == info["pseudo_queries"] == 16
    assert report["dropped"]["generic"] == report["made"] - 16 > 0
    assert report["generic_texts"] == ["background"] and report["cache"].startswith("hit")
    assert summary["data"]["train"]["queries"] == 0  # type: ignore[index]
    assert summary["steps"] == 2 * math.ceil(16 / 8)
    assert (summary["priors"] is not None) == masra
    assert "training from priors only (label_fraction 0)" in caplog.text
    assert all(math.isfinite(line["loss"]) for line in _losses(tmp_path / "run"))
    ckpt = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert ckpt["pseudo_queries"]["priors_only"] and ckpt["train"]["label_fraction"] == 0.0


def test_pseudo_queries_join_labelled_batches_without_changing_the_labelled_stream(
    world: Path, tmp_path: Path
) -> None:
    plain = _train(world, tmp_path / "plain", label_fraction=0.5)
    off = _train(world, tmp_path / "off", label_fraction=0.5, **{"pseudo_queries.min_len": 9.0})
    with_pseudo = _train(world, tmp_path / "pseudo", label_fraction=0.5, **PSEUDO)
    assert plain["steps"] == with_pseudo["steps"] == 2 * math.ceil(8 / 8)
    # weight 0: the rules are not used, the run is the plain one
    assert off["best_metrics"] == plain["best_metrics"]
    assert _losses(tmp_path / "off") == _losses(tmp_path / "plain")
    info = with_pseudo["pseudo_queries"]
    assert isinstance(info, dict) and not info["priors_only"]
    assert info["labelled_queries"] == 8 and info["per_step"] == 8
    assert _losses(tmp_path / "pseudo")[0]["loss"] != _losses(tmp_path / "plain")[0]["loss"]


def test_resume_with_pseudo_queries_is_exact(world: Path, tmp_path: Path) -> None:
    over = {"label_fraction": 0.5, "epochs": 3, **PSEUDO}
    full = _train(world, tmp_path / "full", **over)
    cfg = load_train_config(str(world), None, tiny_overrides(world, **over), no_config=True)
    run_training(cfg, tmp_path / "part", stop_after_epoch=1)
    resumed = run_training(cfg, tmp_path / "part", resume=True)
    assert resumed["steps"] == full["steps"]
    assert resumed["best_metrics"] == full["best_metrics"]
    ends = [[x for x in _losses(tmp_path / r) if x.get("epoch_end")] for r in ("part", "full")]
    assert ends[0] == ends[1] and len(ends[0]) == 3  # every epoch's mean losses, bit for bit
    changed = tiny_overrides(world, **{**over, "pseudo_queries.weight": 2.0})
    with pytest.raises(ValueError, match=r"pseudo_queries\.weight"):
        run_training(
            load_train_config(str(world), None, changed, no_config=True), tmp_path / "part", resume=True
        )


def _card_without_train(tmp_path: Path) -> Path:
    card = make_world(tmp_path / "w", num_train=12, num_val=4, event_texts=True, prior_videos="train-half")
    text = card.read_text().replace(
        "annotations: {train: annotations/train.jsonl, val: annotations/val.jsonl}",
        "annotations: {val: annotations/val.jsonl}",
    )
    mine = card.with_name("mine.yaml")
    mine.write_text(text.replace("name: toy", "name: mine"), encoding="utf-8")
    return mine


def test_a_card_without_train_annotations_trains_on_its_prior_videos(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card = _card_without_train(tmp_path)
    (card.parent / "features" / "vis" / "train005.npz").unlink()  # a prior video without features
    with caplog.at_level(logging.INFO, logger="masra"):
        summary = _train(card, tmp_path / "run", label_fraction=0.0, **PSEUDO)
    report = summary["data"]["train"]["pseudo_queries"]  # type: ignore[index]
    # The priors cover train000-005; train005 has no features and is left out.
    assert report["videos"] == 5 and report["videos_without_features"] == 1
    assert report["without_features_ids"] == ["train005"] and report["videos_not_in_split"] == 0
    assert "has no annotation file for split 'train'" in caplog.text
    assert summary["best_metrics"]  # evaluated on val as usual
    store = json.loads((card.parent / "store" / "index.json").read_text())
    assert store["splits"] == ["val"] and store["videos"] == [f"train00{i}" for i in range(5)]
    # No evaluation split at all: trains, keeps the last checkpoint as the best.
    none = _train(card, tmp_path / "none", label_fraction=0.0, eval_split=None, **PSEUDO)
    assert none["best_metrics"] == {} and none["best_epoch"] == 2
    assert (tmp_path / "none" / "best" / "model.safetensors").is_file()


def test_what_a_card_without_labels_cannot_train(tmp_path: Path) -> None:
    card = _card_without_train(tmp_path)
    with pytest.raises(ValueError, match=r"no annotation file for train split 'train'.*label_fraction: 0"):
        _train(card, tmp_path / "a")
    with pytest.raises(ValueError, match=r"no annotation file for eval split 'test'.*eval_split: null"):
        _train(card, tmp_path / "b", label_fraction=0.0, eval_split="test", **PSEUDO)
