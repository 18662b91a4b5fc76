"""Raw video in: frame sampling, a tiny random CLIP built offline, and `masra predict --video`."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_model

from masra.datasets.card import load_card
from masra.grounding.checkpoint import CHECKPOINT_FORMAT
from masra.grounding.config import LossConfig, ModelConfig
from masra.grounding.infer.video_features import ClipVisionExtractor, features_for_card, sample_clip_frames
from masra.grounding.model import build_model
from masra.pipelines.cli import main

CLIP_DIM, SLOWFAST_DIM, TEXT_DIM = 24, 8, 384  # 384: the offline MiniLM encodes the query text


def _builder():  # scripts/ is not a package: load the builder by path
    path = Path(__file__).parents[1] / "scripts" / "build_tiny_clip.py"
    spec = importlib.util.spec_from_file_location("build_tiny_clip", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_clip


def write_video(path: Path, frames: int = 95, fps: int = 10) -> Path:
    """A 64x48 mp4: the background colour changes every 2 s; a white square slides."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:, :, (i // (2 * fps)) % 3] = 200
            img[10:20, i % 50 : i % 50 + 10] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video")
    clip = _builder()(root / "clip", dim=CLIP_DIM)
    card = root / "vid.yaml"
    card.write_text(
        "name: vid\nformat: qvhighlights\nroot: .\nannotations: {}\nclip_len: 2.0\nmax_clips: 3\n"
        f"video_features: {{slowfast: {{dir: sf, dim: {SLOWFAST_DIM}}}, clip: {{dir: cl, dim: {CLIP_DIM}}}}}\n"
        f"text_features: {{dir: t, dim: {TEXT_DIM}}}\n"
    )
    torch.manual_seed(0)
    cfg = ModelConfig(
        video_dim=SLOWFAST_DIM + CLIP_DIM + 2, text_dim=TEXT_DIM, prior_dim=8, hidden_dim=32, num_heads=4,
        ffn_dim=64, num_queries=4, lrca_dim=16, dai_codebook_size=4,
    )  # fmt: skip
    ckpt = root / "best"
    ckpt.mkdir()
    save_model(build_model(cfg), str(ckpt / "model.safetensors"))
    (ckpt / "config.json").write_text(
        json.dumps(
            {
                "format": CHECKPOINT_FORMAT,
                "dataset": str(card),
                "model": cfg.to_dict(),
                "loss": LossConfig().to_dict(),
            }
        )
    )
    return {"clip": clip, "card": card, "ckpt": ckpt, "video": write_video(root / "v.mp4")}


def test_sample_clip_frames(world: dict[str, Path]) -> None:
    frames, duration = sample_clip_frames(world["video"], 2.0)
    assert duration == pytest.approx(9.5, abs=0.15)
    assert frames.shape == (5, 48, 64, 3)  # ceil(9.5 / 2) clips, one frame each
    # Clip i's frame comes from its centre (i + 0.5) * 2 s: background channel (i // 1) % 3 is lit.
    lit = [int(np.argmax(f[40, 40])) for f in frames]
    assert lit == [0, 1, 2, 0, 1]


def test_features_for_card_fills_missing_types(world: dict[str, Path]) -> None:
    card = load_card(world["card"])
    extractor = ClipVisionExtractor.load(str(world["clip"]))
    vf = features_for_card(world["video"], card, extractor)
    assert vf.features.shape == (5, SLOWFAST_DIM + CLIP_DIM)
    assert not vf.features[:, :SLOWFAST_DIM].any()
    np.testing.assert_allclose(np.linalg.norm(vf.features[:, SLOWFAST_DIM:], axis=1), 1.0, rtol=1e-5)
    assert len(vf.notes) == 1 and "'slowfast'" in vf.notes[0] and "CLIP channel only" in vf.notes[0]
    again = features_for_card(world["video"], card, extractor)
    np.testing.assert_array_equal(vf.features, again.features)


def test_card_without_clip_type_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "c.yaml"
    other.write_text(world["card"].read_text().replace("clip: {dir: cl", "color: {dir: cl"))
    with pytest.raises(ValueError, match="raw video input needs a 'clip' type"):
        features_for_card(world["video"], load_card(other), ClipVisionExtractor.load(str(world["clip"])))


def test_predict_from_a_video_file(world: dict[str, Path]) -> None:
    args = [
        "predict",
        "--checkpoint",
        str(world["ckpt"]),
        "--video",
        str(world["video"]),
        "--clip-model",
        str(world["clip"]),
    ]
    res = CliRunner().invoke(main, [*args, "--query", "a white square slides", "--top-k", "3"])
    assert res.exit_code == 0, res.output
    assert "zero-filled" in res.output
    assert "(5 clips, 3 model pass(es))" in res.output  # 5 clips, windows of 3 every 1 clip
    ranks = [line for line in res.output.splitlines() if line.strip().startswith(("1.", "2.", "3."))]
    assert len(ranks) == 3
    ends = [float(line.split()[4]) for line in ranks]
    assert max(ends) <= 9.5 + 1e-6


def test_sample_clip_frames_without_a_stated_duration(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No container duration: the last frame's time plus one frame interval, from the packets."""
    import masra.grounding.infer.video_features as vf

    frames, _ = sample_clip_frames(world["video"], 2.0)
    monkeypatch.setattr(vf, "probe_duration", lambda path, label: 0.0)
    frames2, duration2 = vf.sample_clip_frames(world["video"], 2.0)
    assert duration2 == pytest.approx(9.5)  # 95 frames at 10 fps: last at 9.4 s, plus 0.1 s
    np.testing.assert_array_equal(frames2, frames)


def test_sample_clip_frames_errors_name_the_file(tmp_path: Path) -> None:
    from masra.grounding.infer.video_features import VideoReadError

    with pytest.raises(VideoReadError, match="video file not found"):
        sample_clip_frames(tmp_path / "missing.mp4", 2.0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00junk" * 100)
    with pytest.raises(VideoReadError, match=re.escape(str(bad))):
        sample_clip_frames(bad, 2.0)
