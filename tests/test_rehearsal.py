"""The dress rehearsal (``scripts/rehearsal``, ``make rehearsal``) on the committed sample of each dataset.

The sample (``tests/data/rehearsal``: real annotation lines, see its README) keeps each release's
awkward cases; the world built from it must show them (clip counts off the grid, videos over
``max_clips``, caption lists of other lengths), and the whole rehearsal, run as a user runs it
(``python -m scripts.rehearsal``, which runs ``make priors`` / ``make train`` / ``make eval`` and
``masra`` in subprocesses), must pass every step. Charades-STA runs in the fast suite (about a
minute: it has videos over ``max_clips``, fractional durations, rows with start >= end);
QVHighlights (its one video file, 120 s or more, captioned clip by clip) and TACoS (one training step
over a 23-min video takes about a minute on one CPU thread) are ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from masra.datasets.card import find_card, load_card
from masra.datasets.features import load_video_features
from masra.prior_gen.importer import parse_import_file
from scripts.rehearsal.priors import write_import_file
from scripts.rehearsal.run import eval_split, sample_videos, shared_qids, train_eval_split
from scripts.rehearsal.sources import SAMPLE, Source, open_source
from scripts.rehearsal.world import REDUCED, build_world, prior_clips

REPO = Path(__file__).resolve().parents[1]


def _sample(dataset: str) -> Source:
    return open_source(dataset, SAMPLE / dataset, "sample")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Qwen2.5-VL, built once for the module (~10 s, no download)."""
    spec = importlib.util.spec_from_file_location(
        "build_tiny_models", REPO / "scripts" / "build_tiny_models.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("tiny_models")
    mod.main(["--out", str(out)])
    return out / "qwen2_5_vl"


def test_the_sample_keeps_each_releases_awkward_cases() -> None:
    qvh = _sample("qvhighlights")
    assert set(qvh.queries) == {"train", "val", "test"}
    assert all(q.labelled for q in qvh.queries["test"])  # the published test labels
    assert qvh.card.annotation_path("test").name == "highlight_test_with_gt.jsonl"
    assert any(v.duration < 150 for v in qvh.videos().values())
    ch = _sample("charades")
    long = [v for v in ch.videos().values() if v.duration > ch.card.max_clips * ch.card.clip_len]
    assert len(long) == 4 and all("train" in v.splits for v in long)
    assert "2 dropped (start >= end)" in ch.notes["train"]
    assert sum(v.duration % 1 != 0 for v in ch.videos().values()) > 10
    tacos = _sample("tacos")
    assert max(v.duration for v in tacos.videos().values()) > 23 * 60
    assert all(v.duration % 1 != 0 for v in tacos.videos().values())


@pytest.mark.parametrize("dataset", ["qvhighlights", "charades", "tacos"])
def test_the_world_has_real_clip_lengths_and_varying_clip_counts(dataset: str, tmp_path: Path) -> None:
    source = _sample(dataset)
    world = build_world(source, tmp_path, widths=REDUCED, sampled=[], tiny_model=tmp_path / "m", seed=0)
    card = load_card(world.card_path)
    assert card.clip_len == source.card.clip_len and card.max_clips == source.card.max_clips
    assert card.extra["text_encoder"] == "minilm" and card.text_features.dim == 384
    off_grid = 0
    for v in source.videos().values():
        x = v.duration / card.clip_len
        n = load_video_features(card, v.vid).shape[0]
        assert math.floor(x) - 1 <= n <= math.ceil(x) + 1
        off_grid += n != prior_clips(v.duration, card.clip_len, card.max_clips)
    assert off_grid > 0
    with np.load(card.text_features.dir / f"qid{source.queries['train'][0].qid}.npz") as z:
        assert z["last_hidden_state"].shape[1] == z["pooler_output"].shape[0] == 384


def test_imported_captions_are_refitted_to_the_grid(tmp_path: Path) -> None:
    source = _sample("charades")
    videos = [v for v in source.videos().values() if "train" in v.splits]
    info = write_import_file(videos, tmp_path / "p.jsonl", source.card, seed=0)
    parsed = parse_import_file(
        tmp_path / "p.jsonl", clip_len=source.card.clip_len, max_clips=source.card.max_clips
    )
    assert not parsed.refused and len(parsed.videos) == info["rows"] == len(videos)
    assert 0 < len(parsed.refitted) < len(videos)


def test_charades_findings_and_the_sampled_videos() -> None:
    source = _sample("charades")
    assert source.card.clip_len == 1.0
    [vid] = sample_videos(source, 1, 60.0)
    assert source.videos()[vid].duration <= 60
    split, _ = eval_split(find_card("charades"), source)  # the card has no val split
    assert split == "test"


def test_qids_shared_by_splits_are_found() -> None:
    """Query features are one ``qid<qid>.npz`` per qid: two splits using a qid for two sentences clash."""
    source = _sample("charades")
    a, b = source.queries["train"][0], source.queries["test"][0]
    clash = Source("charades", source.card, "sample", {"train": [a], "test": [replace(b, qid=a.qid)]})
    assert shared_qids(clash) == {"train/test": 1}
    same = Source("charades", source.card, "sample", {"train": [a], "test": [a]})
    assert shared_qids(same) == {}
    split, findings = train_eval_split(find_card("charades"), clash)
    assert split == "null" and any("qids shared by splits" in f for f in findings)


def _rehearse(dataset: str, out: Path, tiny_model: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "scripts.rehearsal", "--dataset", dataset, "--annotations-root",
           str(SAMPLE / dataset), "--out", str(out), "--videos", "1", "--tiny-model", str(tiny_model)]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    rep = json.loads((out / "rehearsal.json").read_text())
    failed = {s["step"]: s["error"] for s in rep["steps"] if not s["ok"]}
    assert res.returncode == 0 and rep["ok"], (failed, res.stdout[-3000:], res.stderr[-3000:])
    steps = {s["step"]: s for s in rep["steps"]}
    assert steps["make-priors"]["counts"]["videos_generated"] == 1
    imp = steps["priors-import"]["counts"]
    assert imp["rows_refused"] == 0 and imp["captions_refitted"] > 0
    assert steps["train"]["counts"]["train"]["queries"] > 0
    assert (out / "rehearsal.md").read_text().startswith(f"# Dress rehearsal: {dataset}")
    return steps


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_rehearsal_charades(tmp_path: Path, tiny_model: Path) -> None:
    steps = _rehearse("charades", tmp_path / "r", tiny_model)
    train = steps["train"]["counts"]["train"]
    assert train["windows_dropped"] > 0 and train["queries_without_windows"] > 0  # videos over 75 s
    assert {"eval-test", "predict-text", "predict-video"} <= set(steps)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize("dataset", ["qvhighlights", "tacos"])
def test_rehearsal_slow(dataset: str, tmp_path: Path, tiny_model: Path) -> None:
    steps = _rehearse(dataset, tmp_path / "r", tiny_model)
    assert {"eval-val", "eval-test", "predict-text", "predict-video"} <= set(steps)


def test_make_rehearsal_passes_dataset_and_args() -> None:
    res = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "-o", "data/generated/tiny_models/qwen2_5_vl/config.json",
         "rehearsal", "DATASET=tacos", "ARGS=--videos 1"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "-m scripts.rehearsal --dataset $d --videos 1" in res.stdout and "for d in tacos;" in res.stdout
