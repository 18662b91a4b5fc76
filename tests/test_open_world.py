"""The open fixture world: deterministic, realistic invariants, readable by the ordinary readers.

Small worlds (12/4/4 videos) from the committed sentence sample; nothing here needs /work/shared.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from masra.datasets.card import load_card
from masra.datasets.features import find_missing, load_text_features, load_video_features
from masra.datasets.readers import load_queries
from masra.fixture.open_build import OpenBuildConfig, build_open_world
from masra.fixture.open_priors import PREFIXES, cyclic_permutation, fix_span
from masra.fixture.open_world import SPLITS, OpenWorldConfig
from masra.fixture.sentences import from_sample, is_seen, key, sample_path
from masra.pipelines.cli import main
from masra.priors.schema import EMBED_SCHEMA, PRIOR_SCHEMA
from masra.priors.shards import read_shards

SIZES = {"train_videos": 12, "val_videos": 4, "test_videos": 4}
SEED = 3


def _build(out: Path, seed: int = SEED) -> Path:
    build_open_world(OpenBuildConfig(out=out, world=OpenWorldConfig(seed=seed, **SIZES), sentences="sample"))
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("open") / "ow")


@pytest.fixture(scope="module")
def truth(built: Path) -> dict[str, dict[str, Any]]:
    return {r["vid"]: r for r in _jsonl(built / "annotations" / "openworld_events.jsonl")}


def _priors(built: Path, variant: str) -> dict[str, dict[str, Any]]:
    return {r["vid"]: r for r in _jsonl(built / "priors_import" / f"{variant}.jsonl")}


def test_same_seed_gives_identical_bytes_through_the_cli(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    args = ["fixture", "--world", "open", "--out", str(out), "--seed", str(SEED), "--sentences", "sample"]
    args += ["--train-videos", "12", "--val-videos", "4", "--test-videos", "4"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "videos  train 12, val 4, test 4" in res.output
    a, b = _hashes(built), _hashes(out)
    assert sorted(a) == sorted(b)
    assert not [k for k in a if a[k] != b[k]]
    assert {"fixture.json", "priors/noisy/manifest.json", "annotations/openworld_test.jsonl"} <= set(a)


def test_other_seed_gives_other_files(built: Path, tmp_path: Path) -> None:
    other = _hashes(_build(tmp_path / "seed4", seed=SEED + 1))
    same = _hashes(built)
    for rel in (
        "annotations/openworld_train.jsonl",
        "priors_import/reference.jsonl",
        "features/clip/open_val_0000.npz",
    ):
        assert other[rel] != same[rel], rel


def test_marker_records_config_and_sentences(built: Path) -> None:
    marker = json.loads((built / "fixture.json").read_text())
    assert marker["status"] == "complete" and marker["dataset"] == "openworld"
    assert marker["config"]["seed"] == SEED and marker["config"]["latent_dim"] == 24
    s = from_sample()
    assert marker["sentences"] == {
        "source": "sample", "path": "masra/fixture/data/sentences.tsv", "count": len(s.sentences),
        "seen": sum(is_seen(x, 0.8) for x in s.sentences), "sha256": s.sha256,
    }  # fmt: skip
    assert marker["counts"]["videos"] == {"train": 12, "val": 4, "test": 4}


def test_sentence_sample_ships_with_the_package() -> None:
    s = from_sample()
    assert Counter(s.datasets) == {"charades": 100, "qvhighlights": 100, "tacos": 100}
    assert len({key(x) for x in s.sentences}) == len(s.sentences)
    assert (sample_path().parent / "SENTENCES_LICENSE.md").is_file()
    seen = sum(is_seen(x, 0.8) for x in s.sentences) / len(s.sentences)
    assert 0.7 < seen < 0.9


def test_events_queries_and_seen_sentences(built: Path, truth: dict[str, dict[str, Any]]) -> None:
    annotated = unannotated = unseen_eval = distractors = 0
    for v in truth.values():
        events = v["events"]
        assert 4 <= len(events) <= 6 and 30 <= v["duration"] <= 70 and v["duration"] % 2 == 0
        assert len({e["text"] for e in events}) == len(events)
        for a, b in itertools.pairwise(events):
            assert b["start"] - a["end"] >= 2.0
        for e in events:
            assert 4.0 <= e["end"] - e["start"] <= 14.0 and e["start"] * 2 == int(e["start"] * 2)
            assert e["seen"] == is_seen(e["text"], 0.8)
            if v["split"] == "train":
                assert e["seen"], e["text"]  # train videos draw from the seen part only
            unseen_eval += not e["seen"]
        annotated += sum(e["qid"] is not None for e in events)
        unannotated += sum(e["qid"] is None for e in events)
        distractors += any(e["distractor_of"] >= 0 for e in events)
    assert annotated == 2 * len(truth) and unannotated > 0 and unseen_eval > 0 and distractors > 0
    qids = []
    for split in SPLITS:
        for q in _jsonl(built / "annotations" / f"openworld_{split}.jsonl"):
            qids.append(q["qid"])
            [window] = q["relevant_windows"]
            match = [e for e in truth[q["vid"]]["events"] if e["qid"] == q["qid"]]
            assert len(match) == 1 and window == [match[0]["start"], match[0]["end"]]
            assert q["query"] == match[0]["text"]
            assert all(len(s) == 3 and all(0 <= x <= 4 for x in s) for s in q["saliency_scores"])
    assert len(qids) == len(set(qids)) == 40


def _undo_reword(description: str) -> str:
    for p in PREFIXES:
        if description.startswith(p):
            return description[len(p) :]
    return description


def test_reference_priors_describe_every_event(built: Path, truth: dict[str, dict[str, Any]]) -> None:
    ref = _priors(built, "reference")
    assert list(ref) == list(truth)
    for vid, v in truth.items():
        row = ref[vid]
        assert len(row["clip_captions"]) == v["duration"] / 2
        assert len(row["events"]) == len(v["events"])
        for e in row["events"]:
            assert 0 <= e["start"] < e["end"] <= v["duration"]
        unmatched = [e for e in v["events"]]
        for p in row["events"]:
            words = _undo_reword(p["text"]).split()
            # The description is the sentence lower-cased, without its final period, maybe one word less.
            hits = [
                e
                for e in unmatched
                if Counter(words) <= Counter(key(e["text"]).split())
                and len(key(e["text"]).split()) - len(words) <= 1
                and min(p["end"], e["end"]) > max(p["start"], e["start"]) - 3.0
            ]
            assert hits, (vid, p)
            unmatched.remove(hits[0])
        assert not unmatched


def test_noisy_priors_are_worse(built: Path) -> None:
    ref, noisy = _priors(built, "reference"), _priors(built, "noisy")
    assert sum(len(r["events"]) for r in noisy.values()) < sum(len(r["events"]) for r in ref.values())
    differ = sum(
        a != b
        for vid in ref
        for a, b in zip(ref[vid]["clip_captions"], noisy[vid]["clip_captions"], strict=True)
    )
    assert differ > 0


def test_shuffled_priors_come_from_another_video(built: Path, truth: dict[str, dict[str, Any]]) -> None:
    ref, shuffled = _priors(built, "reference"), _priors(built, "shuffled")
    for vid, row in shuffled.items():
        texts = sorted(e["text"] for e in row["events"])
        sources = [other for other, r in ref.items() if sorted(e["text"] for e in r["events"]) == texts]
        assert sources and vid not in sources, vid
        assert truth[sources[0]]["split"] == truth[vid]["split"]
        assert len(row["clip_captions"]) == truth[vid]["duration"] / 2
        assert set(row["clip_captions"]) <= set(ref[sources[0]]["clip_captions"])
        assert all(0 <= e["start"] < e["end"] <= truth[vid]["duration"] for e in row["events"])


def test_imported_runs_and_embeddings(built: Path) -> None:
    for variant in ("reference", "noisy", "shuffled"):
        run = built / "priors" / variant
        rows = read_shards(run, PRIOR_SCHEMA).to_pylist()
        assert [r["video_id"] for r in rows] == list(_priors(built, variant))
        assert all(r["status"] == "ok" and r["num_clips"] == len(r["clip_captions"]) for r in rows)
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["created_at"] == "2024-01-01T00:00:03Z"
        emb = read_shards(run / "embeddings" / "minilm", EMBED_SCHEMA).to_pylist()
        assert [e["video_id"] for e in emb] == [r["video_id"] for r in rows]
        assert np.asarray(emb[0]["event_emb"]).shape == (len(rows[0]["events"]), 384)


def test_features_and_card(built: Path) -> None:
    card = load_card("openworld", {"root": str(built)})
    assert card.video_dim == 96 + 64 + 2 and "priors" not in card.extra  # configs name the run
    for split in SPLITS:
        queries, report = load_queries(card, split)
        assert len(queries) == 2 * SIZES[f"{split}_videos"] and not report.dropped
        find_missing(card, [q.vid for q in queries], [q.qid for q in queries])
        for q in queries:
            n = round(q.duration / 2)
            for name, dim in (("slowfast", 96), ("clip", 64)):
                with np.load(built / "features" / name / f"{q.vid}.npz") as z:
                    f = z["features"]
                assert f.shape == (n, dim) and f.dtype == np.float32 and np.isfinite(f).all()
            assert load_video_features(card, q.vid).shape == (n, 96 + 64)  # endpoints are added later
            tokens, pooled = load_text_features(card, q.qid)
            assert tokens.shape[1] == 384 and pooled.shape == (384,)


def test_config_and_cli_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        OpenWorldConfig(latent_dim=0)
    with pytest.raises(ValueError, match="test_videos"):
        OpenWorldConfig(test_videos=1)
    assert OpenWorldConfig(clip_noise=1).clip_noise == 1.0
    runner = CliRunner()
    base = ["fixture", "--world", "open", "--out", str(tmp_path / "x"), "--sentences", "sample"]
    res = runner.invoke(main, [*base, "--workers", "2"])
    assert res.exit_code == 2 and "--workers: not an option of the open world" in res.output
    res = runner.invoke(main, [*base, "--set-world", "nope=1"])
    assert res.exit_code == 2 and "not a world setting" in res.output
    res = runner.invoke(main, ["fixture", "--out", str(tmp_path / "y"), "--test-videos", "3"])
    assert res.exit_code == 2 and "not an option of the shapes world" in res.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    res = runner.invoke(main, [*base[:-1], str(tmp_path)])
    assert res.exit_code == 2 and "charades_sta_train" in res.output  # a folder without the datasets
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    (shapes / "fixture.json").write_text('{"dataset": "fixture", "status": "complete"}')
    with pytest.raises(FileExistsError, match="not 'openworld'"):
        build_open_world(OpenBuildConfig(out=shapes, world=OpenWorldConfig(**SIZES), sentences="sample"))
    assert [p.name for p in shapes.iterdir()] == ["fixture.json"]


def test_helpers() -> None:
    assert fix_span(5.0, 3.0, 10.0) == (3.0, 5.0)
    assert fix_span(-1.0, 0.0, 10.0) == (0.0, 0.5)
    assert fix_span(12.0, 11.0, 10.0) == (9.5, 10.0)
    p = cyclic_permutation(7, np.random.default_rng(0))
    assert sorted(p) == list(range(7)) and all(p[i] != i for i in range(7))
