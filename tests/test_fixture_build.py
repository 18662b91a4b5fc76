"""The fixture on disk: byte-identical per seed, read by the real readers, priors consistent with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from masra.datasets.card import load_card
from masra.datasets.features import find_missing, load_text_features, load_video_features
from masra.datasets.readers import load_queries
from masra.fixture import BuildConfig, WorldConfig, build_fixture
from masra.fixture.build import prepare_output
from masra.grounding.config import load_train_config
from masra.pipelines.cli import main
from masra.priors.schema import EMBED_SCHEMA, PRIOR_SCHEMA
from masra.priors.shards import read_shards

SMALL = {"train_videos": 4, "val_videos": 2}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fixture") / "fx"
    build_fixture(BuildConfig(out=out, world=WorldConfig(seed=11, **SMALL)))
    return out


def test_same_seed_gives_identical_bytes_through_the_cli(built: Path, tmp_path: Path) -> None:
    """The CLI with 2 worker processes writes the same bytes as the library in one process."""
    out = tmp_path / "again"
    args = ["fixture", "--out", str(out), "--seed", "11", "--train-videos", "4", "--val-videos", "2"]
    args += ["--workers", "2"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "videos  train 4, val 2" in res.output
    a, b = _files(built), _files(out)
    assert sorted(a) == sorted(b)
    assert len([k for k in a if k.endswith(".mp4")]) == 6
    differing = [k for k in a if a[k] != b[k]]
    assert not differing, differing


def test_prepare_output_replaces_only_generated_parts(tmp_path: Path) -> None:
    out = tmp_path / "fx"
    for rel in (
        "fixture.json",
        "videos/old.mp4",
        "priors/reference/shard-00000.parquet",
        "priors/mllm/a.parquet",
    ):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"x")
    prepare_output(out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["priors/mllm/a.parquet"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing"):
        build_fixture(BuildConfig(out=foreign, world=WorldConfig(**SMALL)))
    assert (foreign / "notes.txt").read_text() == "mine"


def test_other_seed_gives_other_annotations(built: Path) -> None:
    from masra.fixture.annotations import write_qvh_jsonl
    from masra.fixture.language import query_sentence
    from masra.fixture.world import make_world

    cfg = WorldConfig(seed=12, **SMALL)
    path = write_qvh_jsonl(make_world(cfg, query_sentence)[:4], built.parent / "seed12.jsonl", 2.0, 12)
    assert path.read_bytes() != (built / "annotations" / "fixture_train.jsonl").read_bytes()


def test_card_reads_the_fixture(built: Path) -> None:
    card = load_card("fixture", {"root": str(built)})
    marker = json.loads((built / "fixture.json").read_text())
    assert marker["status"] == "complete"
    for split in ("train", "val"):
        queries, report = load_queries(card, split)
        assert len(queries) == marker["counts"]["queries"][split] >= 4 * SMALL[f"{split}_videos"]
        assert not report.dropped and not report.clipped
        find_missing(card, [q.vid for q in queries], [q.qid for q in queries])
        for q in queries:
            assert q.relevant_clip_ids and q.saliency_scores
            assert all(len(s) == 3 and all(0 <= v <= 4 for v in s) for s in q.saliency_scores)
            video = load_video_features(card, q.vid)
            assert video.shape == (round(q.duration / card.clip_len), 28)
            tokens, pooled = load_text_features(card, q.qid)
            assert tokens.shape[1] == 384 and pooled.shape == (384,)
    sta = load_card(
        "fixture",
        {
            "root": str(built),
            "format": "charades_txt",
            "annotations.train": "annotations/fixture_sta_train.txt",
            "durations": "annotations/fixture_durations.tsv",
        },
    )
    sta_queries, _ = load_queries(sta, "train")
    qvh_queries, _ = load_queries(card, "train")
    assert len(sta_queries) == sum(len(q.windows) for q in qvh_queries)
    assert load_train_config("fixture").priors_run == "reference"  # the prior run stage 2 trains with


def test_reference_priors_match_the_world(built: Path) -> None:
    card = load_card("fixture", {"root": str(built)})
    run = built / "priors" / "reference"
    priors = read_shards(run, PRIOR_SCHEMA).to_pylist()
    assert len(priors) == 6
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["source"] == "reference" and manifest["counts"]["videos"] == 6
    assert manifest["counts"]["events"] == sum(len(r["events"]) for r in priors)
    queries = [q for s in ("train", "val") for q in load_queries(card, s)[0]]
    for row in priors:
        assert row["source"] == "reference" and row["status"] == "ok"
        n_clips = load_video_features(card, row["video_id"]).shape[0]
        assert row["num_clips"] == n_clips == len(row["clip_captions"])
        spans = [(e["start"], e["end"]) for e in row["events"]]
        assert spans == sorted(spans)
        # Every ground-truth window of every query is one of the prior's event spans.
        for q in (q for q in queries if q.vid == row["video_id"]):
            assert all(w in spans for w in q.windows), (q.qid, q.windows)
    emb = read_shards(run / "embeddings" / "minilm", EMBED_SCHEMA)
    assert emb.column("video_id").to_pylist() == [r["video_id"] for r in priors]
    assert emb.column("encoder").to_pylist()[0] == "minilm"
    first = emb.slice(0, 1).to_pylist()[0]
    assert np.asarray(first["caption_emb"]).shape == (priors[0]["num_clips"], 384)
    assert np.asarray(first["event_emb"]).shape == (len(priors[0]["events"]), 384)
    assert all(first["caption_valid"])
    assert pq.read_metadata(run / "shard-00000.parquet").num_rows == 6
