"""Generation orchestration with a scripted engine: rows, statuses, sharding, atomic resume, schema.

``make_world`` (also used by the end-to-end tests) writes a tiny dataset: mp4s made with PyAV,
Charades-style jsonl annotations and a card, plus broken videos (corrupt, zero-length, missing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from test_prior_video import cfr_times, make_mp4

from masra.datasets.card import load_card
from masra.prior_gen import prompts
from masra.prior_gen.engines.base import GenRequest, GenResult, SamplingConfig
from masra.prior_gen.generate import GenerateConfig, PriorGenerator, generate_priors
from masra.prior_gen.runs import ShardSpec, VideoItem, done_video_ids, videos_from_card
from masra.prior_gen.video import VideoConfig
from masra.priors.schema import PRIOR_SCHEMA
from masra.priors.shards import read_shards

GOOD = {"vidA": 6.0, "vidB": 4.2, "vidC": 5.0}
BROKEN = {"corrupt": 4.0, "empty": 4.0, "missing": 4.0}


def make_world(root: Path, priors: dict | None = None) -> Path:
    """A dataset under ``root`` with GOOD and BROKEN videos; returns the card path (clip_len 2 s)."""
    (root / "videos").mkdir(parents=True)
    for vid, dur in GOOD.items():
        make_mp4(root / "videos" / f"{vid}.mp4", cfr_times(dur, 5), size=(96, 64))
    (root / "videos" / "corrupt.mp4").write_bytes(b"\x00\x01not a video" * 50)
    (root / "videos" / "empty.mp4").write_bytes(b"")
    lines = []
    for qid, (vid, dur) in enumerate({**GOOD, **BROKEN}.items()):
        win = [[0.0, min(2.0, dur)]] if vid != "vidB" else [[1.0, 3.0]]
        lines.append(
            {"qid": qid, "query": f"query {qid}", "vid": vid, "duration": dur, "relevant_windows": win}
        )
    lines.append(
        {"qid": 99, "query": "same video again", "vid": "vidA", "duration": 6.0, "relevant_windows": [[2, 4]]}
    )
    (root / "train.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    card = {
        "name": "tinyworld",
        "format": "charades_jsonl",
        "root": str(root),
        "annotations": {"train": "train.jsonl"},
        "clip_len": 2.0,
        "max_clips": 16,
        "video_features": {"x": {"dir": "features/x", "dim": 4}},
        "text_features": {"dir": "features/t", "dim": 4},
        "video_dir": "videos",
        "prior_dir": "priors",
        **({"priors": priors} if priors else {}),
    }
    path = root / "tinyworld.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


class ScriptedEngine:
    """Answers like a well-behaved MLLM; raises after ``fail_after`` generate() calls."""

    backend = "scripted"
    model_id = "scripted-model"
    model_revision = "r0"

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.calls = 0
        self.requests: list[GenRequest] = []

    def generate(self, requests: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("engine killed")
        self.calls += 1
        self.requests += requests
        out = []
        for r in requests:
            vid, task, i = r.key
            assert r.frames.ndim == 4 and r.frames.shape[0] % 2 == 0 and r.frames.shape[-1] == 3
            if task == "events":
                text = json.dumps({"events": [{"start": 0.5, "end": 99, "description": f"{vid} event"}]})
            elif task == "dense":
                n = r.json_schema["properties"]["captions"]["minItems"] if r.json_schema else 0
                text = json.dumps({"captions": [f"dense {k}" for k in range(n - 1)]})  # one short
            else:
                text = json.dumps({"caption": f"{vid} clip {i}"})
            out.append(GenResult(r.key, text=text, tokens_in=100, tokens_out=10))
        return out

    def close(self) -> None:
        pass


def generator(caption_mode: str = "per_clip", batch_videos: int = 2) -> PriorGenerator:
    cfg = GenerateConfig(
        video=VideoConfig(fps=1.0, max_frames=8), caption_mode=caption_mode, batch_videos=batch_videos
    )
    return PriorGenerator(family=prompts.FAMILIES["qwen2_5_vl"], clip_len=2.0, max_clips=16, cfg=cfg)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("world"))


def test_sharding_is_disjoint_and_complete() -> None:
    ids = [f"video_{i}" for i in range(200)]
    for n in (1, 2, 3, 7):
        parts = [{v for v in ids if ShardSpec(i, n).owns(v)} for i in range(n)]
        assert set().union(*parts) == set(ids)
        assert sum(len(p) for p in parts) == len(ids)
        assert all(parts) or n > len(ids)
    with pytest.raises(ValueError, match="0 <= i < N"):
        ShardSpec(3, 3)


def test_generate_rows_statuses_and_schema(world: Path, tmp_path: Path) -> None:
    items = videos_from_card(load_card(world), ["train"])
    assert [it.vid for it in items] == sorted({**GOOD, **BROKEN})
    run = tmp_path / "run"
    summary = generate_priors(items, generator=generator(), engine_factory=ScriptedEngine, run_dir=run)
    assert summary.status_counts == {"ok": 3, "partial": 0, "failed": 3}
    assert summary.videos_done == 6 and len(summary.shards_written) == 3
    assert "mean tokens in 400, out 40" in summary.line()  # over the 3 videos that reached the model
    table = read_shards(run, PRIOR_SCHEMA)
    assert table.schema.equals(PRIOR_SCHEMA, check_metadata=False)
    rows = {r["video_id"]: r for r in table.to_pylist()}
    a = rows["vidA"]
    assert a["num_clips"] == 3 and a["clip_captions"] == ["vidA clip 0", "vidA clip 1", "vidA clip 2"]
    assert a["events"] == [{"start": 0.5, "end": 6.0, "text": "vidA event"}]  # clamped to the duration
    assert a["status"] == "ok" and a["error"] is None and a["source"] == "mllm"
    assert a["tokens_in"] == 400 and a["frames_sampled"] == 6 + 3 * 2
    assert rows["vidB"]["num_clips"] == 3  # 4.2 s of 2-s clips: the grid keeps the partial last clip
    assert rows["missing"]["error"] == "video file not found"
    assert rows["empty"]["error"].startswith("zero-length file")
    assert rows["corrupt"]["status"] == "failed" and rows["corrupt"]["clip_captions"] == ["", ""]
    manifest = json.loads((run / "manifest-000of001.json").read_text())
    assert (
        manifest["complete"]
        and manifest["status_counts"]["failed"] == 3
        and manifest["model_id"] == "scripted-model"
    )
    assert manifest["failure_reasons"] == {
        "video file not found": 1,
        "zero-length file: #": 1,
        "cannot open #: Invalid data found when processing input": 1,
    }

    import datasets

    ds = datasets.load_dataset(
        "parquet", data_files=sorted(str(p) for p in run.glob("*.parquet")), split="train"
    )
    assert sorted(ds["video_id"]) == sorted(rows) and ds[0]["events"] is not None


def test_dense_mode(world: Path, tmp_path: Path) -> None:
    items = [it for it in videos_from_card(load_card(world), ["train"]) if it.vid == "vidA"]
    engine = ScriptedEngine()
    generate_priors(items, generator=generator("dense"), engine_factory=lambda: engine, run_dir=tmp_path)
    assert [r.key[1] for r in engine.requests] == ["events", "dense"]
    row = read_shards(tmp_path, PRIOR_SCHEMA).to_pylist()[0]
    assert row["clip_captions"] == ["dense 0", "dense 1", ""] and row["status"] == "partial"
    assert "captions: 2 captions for 3 clips" in row["error"]


def test_killed_run_resumes_without_duplicates(world: Path, tmp_path: Path) -> None:
    items = videos_from_card(load_card(world), ["train"])
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="engine killed"):
        generate_priors(
            items, generator=generator(), engine_factory=lambda: ScriptedEngine(fail_after=1), run_dir=run
        )
    assert len(done_video_ids(run)) == 2  # the first batch survived, complete and readable
    assert (
        not list(run.glob(".*.tmp"))
        and not json.loads((run / "manifest-000of001.json").read_text())["complete"]
    )
    summary = generate_priors(items, generator=generator(), engine_factory=ScriptedEngine, run_dir=run)
    assert summary.videos_skipped == 2 and summary.videos_done == 4
    ids = read_shards(run, PRIOR_SCHEMA).column("video_id").to_pylist()
    assert sorted(ids) == sorted({**GOOD, **BROKEN})  # no duplicates

    def must_not_load() -> ScriptedEngine:
        raise AssertionError("a complete run must not load the engine")

    before = sorted(p.name for p in run.glob("*.parquet"))
    again = generate_priors(items, generator=generator(), engine_factory=must_not_load, run_dir=run)
    assert again.videos_done == 0 and sorted(p.name for p in run.glob("*.parquet")) == before


def test_shards_split_the_work(world: Path, tmp_path: Path) -> None:
    items = videos_from_card(load_card(world), ["train"])
    for i in range(3):
        generate_priors(
            items,
            generator=generator(),
            engine_factory=ScriptedEngine,
            run_dir=tmp_path,
            shard=ShardSpec(i, 3),
        )
    ids = read_shards(tmp_path, PRIOR_SCHEMA).column("video_id").to_pylist()
    assert sorted(ids) == sorted({**GOOD, **BROKEN})
    assert all(pq.read_table(p).num_rows <= 2 for p in tmp_path.glob("part-*.parquet"))
    assert len(list(tmp_path.glob("manifest-*of003.json"))) == 3


def test_engine_error_on_one_request_is_a_partial_row(tmp_path: Path) -> None:
    make_mp4(tmp_path / "v.mp4", cfr_times(4.0, 5))

    class OneBad(ScriptedEngine):
        def generate(self, requests: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
            out = super().generate(requests, sampling)
            out[1] = GenResult(out[1].key, error="generation failed: boom")
            return out

    generate_priors(
        [VideoItem("v", 4.0, tmp_path / "v.mp4")],
        generator=generator(),
        engine_factory=OneBad,
        run_dir=tmp_path / "r",
    )
    row = read_shards(tmp_path / "r", PRIOR_SCHEMA).to_pylist()[0]
    assert row["status"] == "partial" and row["clip_captions"] == ["", "v clip 1"]
    assert "clip: generation failed: boom" in row["error"]


def test_skip_nonref_reaches_the_decoder(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import masra.prior_gen.generator as gen_mod

    seen: list[bool] = []
    real = gen_mod.decode_at

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("skip_nonref", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(gen_mod, "decode_at", spy)
    items = [it for it in videos_from_card(load_card(world), ["train"]) if it.vid in GOOD][:1]
    for flag in (False, True):
        cfg = GenerateConfig(video=VideoConfig(fps=1.0, max_frames=8, skip_nonref=flag), batch_videos=1)
        gen = PriorGenerator(family=prompts.FAMILIES["qwen2_5_vl"], clip_len=2.0, max_clips=16, cfg=cfg)
        generate_priors(items, generator=gen, engine_factory=ScriptedEngine, run_dir=tmp_path / f"run{flag}")
    assert seen == [False, True]
