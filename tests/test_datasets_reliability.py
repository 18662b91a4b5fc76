"""Reliability of masra.datasets, the dataset layer (issue 15): ids that are paths, NaN/Inf features, length checks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from masra.datasets.card import load_card
from masra.datasets.features import load_text_features, load_video_features
from masra.datasets.readers import (
    read_charades_txt,
    read_durations,
    read_qvhighlights_jsonl,
    read_tacos_jsonl,
)
from masra.datasets.store_build import build_feature_store
from masra.datasets.types import AnnotationError
from masra.pipelines.cli import main

BAD_IDS = ["../v1", "a/b", "a\\b", "/etc/passwd", "C:evil", "x..y"]


def _jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _rec(qid: object, vid: str) -> dict[str, object]:
    return {"qid": qid, "query": "a dog", "duration": 10, "vid": vid, "relevant_windows": [[1, 2]]}


# ---- hole 7: ids that are paths ------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS)
def test_jsonl_vid_that_is_a_path_is_refused_with_file_line(tmp_path: Path, bad: str) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [_rec(1, "v0"), _rec(2, bad)])
    with pytest.raises(AnnotationError, match=r"a\.jsonl:2: vid") as e:
        read_qvhighlights_jsonl(path)
    assert e.value.line == 2


@pytest.mark.parametrize("bad", BAD_IDS)
def test_tacos_string_qid_that_is_a_path_is_refused(tmp_path: Path, bad: str) -> None:
    path = _jsonl(tmp_path / "t.jsonl", [_rec(bad, "v0")])
    with pytest.raises(AnnotationError, match=r"t\.jsonl:1: qid"):
        read_tacos_jsonl(path)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_charades_txt_and_durations_ids_that_are_paths_are_refused(tmp_path: Path, bad: str) -> None:
    durations = tmp_path / "d.tsv"
    durations.write_text(f"vid\tlength\nv0\t30\n{bad}\t20\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"d\.tsv:3: vid"):
        read_durations(durations)
    durations.write_text("v0\t30\n", encoding="utf-8")
    txt = tmp_path / "c.txt"
    txt.write_text(f"v0 1 2##a dog\n{bad} 1 2##a cat\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"c\.txt:2: vid"):
        read_charades_txt(txt, durations)


def test_plain_ids_still_read(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [_rec(1, "NUsG9BgSes0_210.0_360.0"), _rec(2, "s13-d21.avi")])
    assert [q.vid for q in read_qvhighlights_jsonl(path)[0]] == ["NUsG9BgSes0_210.0_360.0", "s13-d21.avi"]


# ---- a small dataset on disk ---------------------------------------------------------------------


def _world(root: Path, lengths: dict[str, int], durations: dict[str, float]) -> Path:
    """Two-clip-second dataset: one query per video; video features of ``lengths[vid]`` clips."""
    (root / "vis").mkdir(parents=True)
    (root / "txt").mkdir()
    rng = np.random.default_rng(0)
    recs = []
    for i, (vid, n) in enumerate(lengths.items()):
        np.savez(root / "vis" / f"{vid}.npz", features=rng.normal(size=(n, 4)).astype(np.float32))
        np.savez(
            root / "txt" / f"qid{i}.npz",
            last_hidden_state=rng.normal(size=(3, 5)).astype(np.float32),
            pooler_output=rng.normal(size=(5,)).astype(np.float32),
        )
        recs.append({**_rec(i, vid), "duration": durations[vid]})
    _jsonl(root / "train.jsonl", recs)
    card = root / "toy.yaml"
    card.write_text(
        f"name: toy\nformat: qvhighlights\nroot: {root}\nclip_len: 2.0\nmax_clips: 100\n"
        "annotations: {train: train.jsonl}\n"
        "video_features: {vis: {dir: vis, key: features, dim: 4}}\n"
        "text_features: {dir: txt, key: last_hidden_state, dim: 5}\n",
        encoding="utf-8",
    )
    return card


# ---- hole 2: NaN / Inf in features ---------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_build_store_refuses_non_finite_video_features(tmp_path: Path, value: float) -> None:
    card_path = _world(tmp_path / "w", {"v0": 5, "v1": 5}, {"v0": 10.0, "v1": 10.0})
    x = np.ones((5, 4), np.float32)
    x[3, 2] = value
    np.savez(tmp_path / "w" / "vis" / "v1.npz", features=x)
    card = load_card(str(card_path))
    with pytest.raises(ValueError, match=r"v1\.npz.*video 'v1'.*row 3, column 2"):
        load_video_features(card, "v1")
    res = CliRunner().invoke(main, ["data", "build-store", "-d", str(card_path), "-s", "train"])
    assert res.exit_code != 0 and "v1.npz" in res.output and "row 3, column 2" in res.output
    assert not (tmp_path / "w" / "store").exists()


def test_build_store_refuses_non_finite_text_features(tmp_path: Path) -> None:
    card_path = _world(tmp_path / "w", {"v0": 5, "v1": 5}, {"v0": 10.0, "v1": 10.0})
    tokens = np.ones((3, 5), np.float32)
    tokens[1, 4] = np.nan
    np.savez(
        tmp_path / "w" / "txt" / "qid1.npz", last_hidden_state=tokens, pooler_output=np.ones(5, np.float32)
    )
    card = load_card(str(card_path))
    with pytest.raises(ValueError, match=r"qid1\.npz.*qid 1.*row 1, column 4"):
        load_text_features(card, 1)
    pooled = np.ones(5, np.float32)
    pooled[2] = np.inf
    np.savez(
        tmp_path / "w" / "txt" / "qid1.npz",
        last_hidden_state=np.ones((3, 5), np.float32),
        pooler_output=pooled,
    )
    with pytest.raises(ValueError, match=r"qid1\.npz.*qid 1.*index 2"):
        build_feature_store(card, ["train"])


# ---- hole 6: annotation duration against the feature length ---------------------------------------


def test_length_mismatch_is_warned_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # 2-s clips: v0 matches (5 clips, 10 s), v1 has 10x too few clips, v2 features outrun the duration.
    card_path = _world(tmp_path / "w", {"v0": 5, "v1": 5, "v2": 9}, {"v0": 10.0, "v1": 100.0, "v2": 10.0})
    res = CliRunner().invoke(main, ["data", "stats", "-d", str(card_path), "-s", "train"])
    assert res.exit_code == 0, res.output
    checks = json.loads(res.output[res.output.index("{") :])["feature_lengths"]
    assert checks["videos_checked"] == 3
    assert checks["length_mismatch"] == 2  # v1 (10x) and v2 (9 clips for 5)
    assert checks["features_longer_than_duration"] == 1
    with caplog.at_level(logging.WARNING):
        build_feature_store(load_card(str(card_path)), ["train"])
    text = caplog.text
    assert "2 of 3 videos" in text and "features longer than" in text
