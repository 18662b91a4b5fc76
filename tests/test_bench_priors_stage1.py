"""Smoke tests of the prior-sensitivity transforms and the stage-1 overhead benchmark (tiny shapes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench.priors import (
    PriorVariant,
    derangement,
    finished_same,
    noisy,
    shuffled,
    verdicts,
    write_holdout,
    write_variant,
)
from bench.stage1_speed import CannedEngine, Stage1SpeedConfig, run_stage1_speed
from masra.grounding.config.train import TrainConfig
from masra.prior_gen import prompts
from masra.prior_gen.engines.base import GenRequest, SamplingConfig
from masra.prior_gen.parsing import ParseConfig, parse_caption, parse_events
from masra.priors.table import read_prior_table

CLIP = 2.0


def _variant(rng: np.random.Generator, clips: list[int], dim: int = 4) -> PriorVariant:
    se = []
    for n in clips:
        grid = n * CLIP
        se.append(np.array([[0.0, grid / 2], [grid / 2, grid]], np.float32))
    return PriorVariant(
        vids=[f"v{i}" for i in range(len(clips))],
        num_clips=clips,
        event_se=se,
        event_emb=[rng.standard_normal((2, dim)).astype(np.float16) for _ in clips],
        caption_emb=[rng.standard_normal((n, dim)).astype(np.float16) for n in clips],
        caption_valid=[np.ones(n, bool) for n in clips],
    )


def test_derangement_has_no_fixed_points() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 10):
        p = derangement(n, rng)
        assert sorted(p.tolist()) == list(range(n)) and not (p == np.arange(n)).any()
    with pytest.raises(ValueError):
        derangement(1, rng)


def test_shuffled_priors_come_from_another_video_on_the_receivers_grid() -> None:
    rng = np.random.default_rng(1)
    ref = _variant(rng, [4, 8, 6])
    out = shuffled(ref, CLIP, np.random.default_rng(2))
    for i, n in enumerate(ref.num_clips):
        assert out.caption_emb[i].shape == (n, 4) and out.caption_valid[i].shape == (n,)
        assert not np.array_equal(out.event_emb[i], ref.event_emb[i])  # another video's events
        assert (out.event_se[i] >= 0).all() and (out.event_se[i] <= n * CLIP + 1e-5).all()
        assert out.event_se[i][-1, 1] == pytest.approx(n * CLIP)  # the donor's full span, stretched


def test_noisy_priors_keep_valid_spans_and_replace_about_the_share_asked() -> None:
    rng = np.random.default_rng(3)
    ref = _variant(rng, [30] * 20, dim=16)
    out = noisy(ref, CLIP, np.random.default_rng(4), jitter=0.5, replace=0.5)
    changed = sum(
        int((a != b).any(axis=1).sum()) for a, b in zip(out.caption_emb, ref.caption_emb, strict=True)
    )
    assert 0.35 < changed / 600 < 0.65
    moved = 0
    for se, r, n in zip(out.event_se, ref.event_se, ref.num_clips, strict=True):
        assert (se[:, 0] < se[:, 1]).all() and (se >= 0).all() and (se <= n * CLIP).all()
        moved += int((np.abs(se - r) > 1e-6).any())
    assert moved > 15
    untouched = noisy(ref, CLIP, np.random.default_rng(4), jitter=0.0, replace=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(untouched.caption_emb, ref.caption_emb, strict=True))


def test_written_variant_reads_back_through_the_training_reader(tmp_path: Path) -> None:
    ref = _variant(np.random.default_rng(5), [3, 5])
    write_variant(ref, tmp_path / "run" / "embeddings" / "enc", "enc")
    table = read_prior_table(tmp_path, "run", "enc")
    assert table.video_ids == ["v0", "v1"] and table.dim == 4
    np.testing.assert_array_equal(table.caption_emb[1, :5], ref.caption_emb[1])
    np.testing.assert_allclose(table.event_se[0, :2], ref.event_se[0])


def test_verdicts_say_plainly_when_priors_do_not_help() -> None:
    same = {"last": {"MR-full-R1@0.5": [10.0, 11.0, 12.0], "MR-full-mAP": [5.0, 5.0, 5.0]}}
    per = {"baseline": same, "masra+reference": same, "masra+shuffled": same}
    text = " ".join(verdicts(per))
    assert "does NOT beat the baseline" in text and "shuffled priors do as well as reference" in text
    better = {"last": {"MR-full-R1@0.5": [30.0, 31.0, 32.0], "MR-full-mAP": [20.0, 21.0, 22.0]}}
    text = " ".join(verdicts({"baseline": same, "masra+reference": better, "masra+shuffled": same}))
    assert "beats the baseline" in text and "reference priors beat shuffled" in text
    text = " ".join(verdicts({"baseline": same, "masra+reference": same, "masra+shuffled": better}))
    assert "shuffled priors do BETTER than reference ones" in text


def test_verdicts_name_the_prior_loss_whose_removal_helps_or_costs() -> None:
    ref = {"MR-full-R1@0.5": [70.0, 71.0, 72.0], "MR-full-mAP": [40.0, 41.0, 42.0]}
    per = {
        "masra+reference": {"last": ref},
        "masra+ref-no-esta": {
            "last": {"MR-full-R1@0.5": [80.0, 81.0, 82.0], "MR-full-mAP": [50.0, 51.0, 52.0]}
        },
        "masra+ref-no-lrca": {
            "last": {"MR-full-R1@0.5": [60.0, 61.0, 62.0], "MR-full-mAP": [41.0, 42.0, 40.0]}
        },
    }
    text = "\n".join(verdicts(per))
    assert "switching ESTA off IMPROVES on all prior losses (81.00 vs 71.00)" in text
    assert "switching LRCA off costs accuracy (61.00 vs 71.00)" in text
    assert "MR-full-mAP: switching LRCA off changes nothing beyond seed noise" in text


def test_holdout_split_keeps_every_query_and_shares_no_video(tmp_path: Path) -> None:
    lines = [{"qid": q, "vid": f"v{q // 3}", "query": "x"} for q in range(60)]  # 20 videos, 3 queries each
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(x) + "\n" for x in lines))
    fit, held = write_holdout(train, tmp_path / "split", 0.25)
    fit_rows = [json.loads(x) for x in fit.read_text().splitlines()]
    held_rows = [json.loads(x) for x in held.read_text().splitlines()]
    assert sorted(r["qid"] for r in fit_rows + held_rows) == list(range(60))
    assert len({r["vid"] for r in held_rows}) == 5
    assert not {r["vid"] for r in fit_rows} & {r["vid"] for r in held_rows}
    again = write_holdout(train, tmp_path / "again", 0.25)[1]
    assert again.read_text() == held.read_text()  # the same split every time
    before = (fit.stat().st_mtime_ns, held.stat().st_mtime_ns)
    os.utime(train)  # written anew with the same lines: the split files are left untouched
    write_holdout(train, tmp_path / "split", 0.25)
    assert (fit.stat().st_mtime_ns, held.stat().st_mtime_ns) == before
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        write_holdout(train, tmp_path / "bad", 1.0)


def test_canned_answers_parse_into_full_priors() -> None:
    eng = CannedEngine(duration=150.0)
    times = np.array([0.0, 1.0])
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    reqs = [
        GenRequest(("v", "events", 0), "p", frames, times, 64, prompts.events_schema(150.0, 16)),
        GenRequest(("v", "clip", 3), "p", frames, times, 16, prompts.caption_schema()),
    ]
    ev, cap = eng.generate(reqs, SamplingConfig())
    parsed = parse_events(ev.text, 150.0, ParseConfig(), truncated=False)
    assert len(parsed.events) == 6 and parsed.events[-1].end == pytest.approx(150.0)
    assert parse_caption(cap.text) == "a person walks in a room, clip 3"


def test_stage1_speed_runs_the_real_generator_on_a_short_video(tmp_path: Path) -> None:
    pytest.importorskip("av")
    cfg = Stage1SpeedConfig(videos=1, duration=4.0, fps=8, width=64, height=48, batch_videos=1)
    res = run_stage1_speed(cfg, tmp_path)
    assert res["status_counts"]["ok"] == 1 and res["status_counts"]["failed"] == 0
    assert res["requests_per_video"] == 1 + 2  # events + one caption per 2-s clip
    phases = res["phases_s_per_video"]
    assert phases["decode (inside prepare)"] <= phases["prepare (decode + sample + build)"] + 1e-6
    assert (tmp_path / "run").is_dir() and any((tmp_path / "run").glob("*.parquet"))


def test_a_finished_run_is_kept_only_for_the_identical_configuration(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = {"epochs": 40, "scheduler": "cosine", "model": {"hidden_dim": 128}, "lrca": None}
    assert not finished_same(run, cfg)  # nothing there
    (run / "last").mkdir(parents=True)
    (run / "last" / "config.json").write_text(json.dumps({"train": cfg, "epoch": 40}))
    assert not finished_same(run, cfg)  # checkpoint without summary: interrupted, train again
    (run / "summary.json").write_text("{}")
    assert finished_same(run, cfg)
    assert not finished_same(run, {**cfg, "epochs": 20})
    assert not finished_same(run, {**cfg, "model": {"hidden_dim": 256}})


def test_a_run_saved_before_a_field_existed_counts_as_trained_with_its_default(tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=3, seed=7).to_dict()
    old = {k: v for k, v in cfg.items() if k != "pseudo_queries"}  # saved before the field was added
    run = tmp_path / "run"
    (run / "last").mkdir(parents=True)
    (run / "last" / "config.json").write_text(json.dumps({"train": old}))
    (run / "summary.json").write_text("{}")
    assert finished_same(run, cfg)
    on = TrainConfig(epochs=3, seed=7, pseudo_queries={"weight": 1.0}).to_dict()
    assert not finished_same(run, on)  # the default is filled in, not any value


def test_a_loss_key_the_run_left_to_its_default_is_compared_with_the_default_it_used(tmp_path: Path) -> None:
    # A run trained before a loss default changed saved no such key in its train section, but its
    # resolved loss section says what it used: a setting that now names the key sees the difference.
    cfg = TrainConfig(epochs=3, seed=7).to_dict()
    run = tmp_path / "run"
    (run / "last").mkdir(parents=True)
    saved = {"train": cfg, "loss": {"esta_edge_share": 0.0, "w_lrca": 1.0}}
    (run / "last" / "config.json").write_text(json.dumps(saved))
    (run / "summary.json").write_text("{}")
    assert finished_same(run, cfg)  # names nothing: compared as before
    assert finished_same(run, {**cfg, "loss": {"esta_edge_share": 0.0}})  # what it used
    assert not finished_same(run, {**cfg, "loss": {"esta_edge_share": "auto"}})  # not what it used
    assert not finished_same(run, {**cfg, "loss": {"esta_edge_share": 0.15}})
