"""`masra predict --video` with the model extractors a card names (tiny CLIP + SlowFast stand-ins).

A random checkpoint on a SlowFast + CLIP card: every feature type of a raw video is extracted (no
zero-filled channel), so `--video x.mp4` prints what `--vid x` prints once `masra features extract`
has stored x's files; a long video takes several windows; errors are one line naming the file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _slowfast import save_slowfast
from click.testing import CliRunner
from safetensors.torch import save_model

from masra.features.slowfast_net import SlowFast, SlowFastConfig
from masra.fixture.render import write_mp4
from masra.grounding.checkpoint import CHECKPOINT_FORMAT
from masra.grounding.config import LossConfig, ModelConfig
from masra.grounding.model import build_model
from masra.pipelines.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from build_tiny_clip import build_tiny_clip

CLIP_DIM, TEXT_DIM = 24, 384  # 384: the offline MiniLM encodes the query text
TINY_SF = SlowFastConfig(width=8, depths=(1, 1, 1, 1), frames=8, crop_size=32, num_classes=5)


def _video(path: Path, frames: int, seed: int = 0) -> Path:
    """48x64 at 10 fps: noise with a bright square sweeping right (content changes per clip)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, size=(frames, 48, 64, 3), dtype=np.uint8)
    for i in range(frames):
        x = 2 + (i * 50) // frames
        pixels[i, 10:30, x : x + 8] = (255, 200, 40)
    return write_mp4(pixels, path, 10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video")
    build_tiny_clip(root / "models" / "clip", dim=CLIP_DIM)
    save_slowfast(SlowFast(TINY_SF).eval(), root / "models" / "slowfast")
    card = root / "vid.yaml"
    card.write_text(
        f"name: vid\nformat: qvhighlights\nroot: {root}\nannotations: {{}}\nclip_len: 2.0\nmax_clips: 3\n"
        "video_features:\n"
        f"  slowfast: {{dir: sf, dim: {TINY_SF.dim}, extractor: slowfast-r50, model: models/slowfast}}\n"
        f"  clip: {{dir: cl, dim: {CLIP_DIM}, extractor: clip-vit-b32, model: models/clip}}\n"
        f"temporal_endpoint: true\ntext_features: {{dir: t, dim: {TEXT_DIM}}}\ntext_encoder: minilm\n"
    )
    torch.manual_seed(0)
    cfg = ModelConfig(
        video_dim=TINY_SF.dim + CLIP_DIM + 2, text_dim=TEXT_DIM, prior_dim=8, hidden_dim=32, num_heads=4,
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
    videos = root / "videos"
    return {
        "root": root,
        "card": card,
        "ckpt": ckpt,
        "short": _video(videos / "short.mp4", 55),  # 5.5 s: 3 clips, one window
        "long": _video(videos / "long.mp4", 135, seed=1),  # 13.5 s: 7 clips, windows of 3
    }


def _predict(ckpt: Path, *args: str) -> list[dict[str, object]]:
    res = CliRunner().invoke(
        main, ["predict", "--checkpoint", str(ckpt), "--query", "a square slides right", "--json", *args]
    )
    assert res.exit_code == 0, res.output
    rows = [line[line.index("{") :] for line in res.output.splitlines() if '"pred_relevant_windows"' in line]
    assert rows, res.output
    return [json.loads(row) for row in rows]


def test_raw_video_equals_its_stored_features(world: dict[str, Path], one_thread: None) -> None:
    """--video runs the card's slowfast + clip extractors: the same windows as --vid on stored files."""
    res = CliRunner().invoke(
        main,
        ["features", "extract", "--dataset", str(world["card"]), "--videos", str(world["root"] / "videos")],
    )
    assert res.exit_code == 0, res.output
    for name in ("short", "long"):
        assert (world["root"] / "sf" / f"{name}.npz").is_file() and (
            world["root"] / "cl" / f"{name}.npz"
        ).is_file()
        from_video = _predict(world["ckpt"], "--video", str(world[name]))
        from_files = _predict(world["ckpt"], "--vid", name)
        assert from_video == from_files
        windows = from_video[0]["pred_relevant_windows"]
        assert isinstance(windows, list) and 1 <= len(windows) <= 5
    # with the SlowFast channel zeroed (the old CLIP-only path) the long video's windows differ
    from masra.datasets.card import load_card
    from masra.datasets.features import load_video_features

    feats = load_video_features(load_card(world["card"]), "long")
    zeroed = feats.copy()
    zeroed[:, : TINY_SF.dim] = 0.0
    npz = world["root"] / "zeroed.npz"
    np.savez(npz, features=zeroed)
    assert _predict(world["ckpt"], "--video-features", str(npz)) != _predict(world["ckpt"], "--vid", "long")


def test_long_video_is_windowed(world: dict[str, Path], one_thread: None) -> None:
    res = CliRunner().invoke(
        main, ["predict", "--checkpoint", str(world["ckpt"]), "--video", str(world["long"]), "--query", "x"]
    )
    assert res.exit_code == 0, res.output
    assert "(7 clips, 5 model pass(es))" in res.output  # 13.5 s in 2-s clips; windows of 3, stride 1
    ranks = [line.split() for line in res.output.splitlines() if re.match(r"\s+\d+\. ", line)]
    ends = [float(r[4]) for r in ranks]
    assert ends and max(ends) <= 13.5 + 1e-6


def test_grounder_predict_video_reports_duration(world: dict[str, Path], one_thread: None) -> None:
    from masra.grounding.infer.grounder import Grounder

    g = Grounder.from_pretrained(world["ckpt"])
    [res] = g.predict_video(world["short"], query_text="a square slides right", top_k=2)
    assert res.extra["num_clips"] == 3 and res.extra["duration"] == pytest.approx(5.5, abs=0.05)
    assert len(res.windows) == 2 and res.saliency.shape == (3,)
    assert g._extractors is not None and sorted(g._extractors) == ["clip", "slowfast"]  # loaded once, kept


def test_unreadable_video_is_one_line_naming_the_file(world: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00junk" * 100)
    res = CliRunner().invoke(
        main, ["predict", "--checkpoint", str(world["ckpt"]), "--video", str(bad), "--query", "x"]
    )
    assert res.exit_code == 1
    [line] = [x for x in res.output.splitlines() if x.startswith("Error")]  # (others: model-loading bars)
    assert str(bad) in line and "cannot open" in line, res.output
    assert "Traceback" not in res.output


def test_missing_extractor_weights_are_one_line(world: dict[str, Path]) -> None:
    missing = world["root"] / "nowhere"
    res = CliRunner().invoke(
        main,
        ["predict", "--checkpoint", str(world["ckpt"]), "--video", str(world["short"]), "--query", "x",
         "--set", f"video_features.slowfast.model={missing}"],
    )  # fmt: skip
    assert res.exit_code == 1
    [line] = [x for x in res.output.splitlines() if x.startswith("Error")]
    assert "slowfast" in line and str(missing) in line and "Traceback" not in res.output, res.output


def test_card_type_without_extractor_is_refused(world: dict[str, Path]) -> None:
    res = CliRunner().invoke(
        main,
        ["predict", "--checkpoint", str(world["ckpt"]), "--video", str(world["short"]), "--query", "x",
         "--set", "video_features.clip.extractor=null", "--set", "video_features.clip.model=null"],
    )  # fmt: skip
    assert res.exit_code == 1 and "name no extractor" in res.output, res.output
