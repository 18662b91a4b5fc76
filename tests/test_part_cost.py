"""The part-cost tool on tiny shapes: every variant runs, each part's variant lacks that part, and the
per-part time profile attributes each part's ops to it.

Checks structure and op counts only, never speed: speed is measured by the benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.op_count import OpCountConfig, random_batch, time_step_parts
from bench.part_cost import PARTS, build, format_table, main, run_part_cost, with_prior_videos

TINY_MODEL = {"hidden_dim": 32, "num_heads": 4, "ffn_dim": 64, "lrca_dim": 8, "dai_codebook_size": 3}

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny() -> OpCountConfig:
    return OpCountConfig(batch_size=4, num_clips=8, text_len=4, prior_dim=8, model=TINY_MODEL)


def test_every_variant_runs_and_a_part_off_dispatches_fewer_ops() -> None:
    names = [
        "baseline",
        "masra",
        *(f"masra-{p}" for p in PARTS),
        "masra-video",
        "masra+prior_videos",
        "masra+replace",
        "masra+esta_sge",
        "masra+sora_video",
        "masra+sge_depthwise",
        "masra+video_attn",
        "masra+cheap",
        "masra+cheap+video_attn",
        "masra+lean",
    ]
    result = run_part_cost(_tiny(), names, rounds=1, steps=1)
    ops = result["ops"]
    assert ops["baseline"] < ops["masra"] < ops["masra+prior_videos"]
    for part in (*PARTS, "video"):
        assert ops[f"masra-{part}"] < ops["masra"], part
        assert "seconds" in result["part_s"][part]
    assert result["part_s"]["prior_videos"]["over_masra"] is not None
    assert ops["masra+replace"] < ops["masra"]  # one clip-encoder layer fewer
    assert ops["masra+esta_sge"] < ops["masra"]  # no ESTA head, one clip term fewer
    assert ops["masra+lean"] < min(ops["masra+esta_sge"], ops["masra-video"])
    assert ops["masra+video_attn"] < ops["masra"]  # no FFN in the video layer
    flops = result["flops"]
    assert 0 < flops["baseline"] < flops["masra"] < flops["masra+prior_videos"]
    for part in (*PARTS, "video"):  # every part has matrix products of its own
        assert flops[f"masra-{part}"] < flops["masra"], part
    assert flops["masra+video_attn"] < flops["masra"]
    table = format_table(result)
    assert "| masra-sora |" in table and "| prior_videos |" in table
    assert f"| {flops['masra'] / flops['baseline']:.3f} |" in table  # the FLOP ratio column


def test_prior_videos_add_a_quarter_of_the_batch_with_their_own_priors() -> None:
    cfg = _tiny()
    batch = random_batch(cfg, 10, 6, torch.device("cpu"), torch.float32)
    extra = with_prior_videos(batch, 0.5).prior_videos
    assert extra is not None and extra.video.shape[0] == 2
    assert batch.priors is not None
    assert torch.equal(extra.priors.event_emb, batch.priors.event_emb[:2])
    assert extra.priors.member is not None and extra.priors.member.shape[0] == 2


def test_the_time_profile_names_each_part_and_the_cli_writes_json(tmp_path: Path) -> None:
    acc = Accelerator(cpu=True)
    cfg = _tiny()
    full, vdim, tdim = build("masra", cfg, acc)
    batch = random_batch(cfg, vdim, tdim, torch.device("cpu"), torch.float32)
    parts = time_step_parts(full, batch, repeats=1)
    for part in ("model.sge", "model.sora", "model.video_encoder", "criterion.prior_losses"):
        assert parts[part]["total"] >= 0 and parts[part]["forward"] >= 0, part
    no_sora, *_ = build("masra-sora", cfg, acc)
    assert "model.sora" not in time_step_parts(no_sora, batch, repeats=1)
    out = tmp_path / "cost.json"
    main(["--dataset", "qvhighlights", "--batch-size", "2", "--clips", "6", "--text-len", "3", "--rounds", "1",
          "--steps", "1", "--variants", "baseline,masra", "--json", str(out), "--profile-steps", "1",
          *(a for k, v in TINY_MODEL.items() for a in ("--set", f"{k}={v}"))])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["bench"] == "part_cost" and set(saved["median_s"]) == {"baseline", "masra"}
    assert (
        "model.sora" in saved["profile_ms"]["masra"] and "model.sora" not in saved["profile_ms"]["baseline"]
    )
