"""The model-based extractors on tiny random stand-ins built here: clip-vit-b32 and slowfast-r50.

Also the registry's errors and SlowFast's parameter layout (PyTorchVideo's ``slowfast_r50`` names and
shapes, so its Kinetics checkpoint loads strictly).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _slowfast import save_slowfast

from masra.features.registry import EXTRACTORS, load_extractor
from masra.features.slowfast import load_slowfast
from masra.features.slowfast_net import SlowFast, SlowFastConfig
from masra.fixture.render import write_mp4
from masra.hub import ModelUnavailableError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from build_tiny_clip import build_tiny_clip

TINY_SF = SlowFastConfig(width=8, depths=(1, 1, 1, 1), frames=8, crop_size=32, num_classes=5)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9.5 s at 10 fps, 48x80: a bright square sweeping right over noise (content changes per clip)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, size=(95, 48, 80, 3), dtype=np.uint8)
    for i in range(95):
        x = 2 + (i * 70) // 95
        frames[i, 10:30, x : x + 8] = (255, 200, 40)
    return write_mp4(frames, tmp_path_factory.mktemp("v") / "sweep.mp4", 10)


def test_tiny_clip_embeds_the_frame_at_each_clip_centre(
    video: Path, tmp_path: Path, one_thread: None
) -> None:
    from masra.fixture.render import read_mp4
    from masra.video_io import sample_frames

    folder = build_tiny_clip(tmp_path / "clip", dim=24)
    ext = load_extractor("clip-vit-b32", model=str(folder), device="cpu", batch_size=3)
    assert (ext.name, ext.dim) == ("clip-vit-b32", 24)
    feats = ext.extract(video, 1.5)  # 9.5 s -> 7 clips, centres 0.75, 2.25, ..., 9.75 (last frame)
    assert feats.shape == (7, 24) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert np.abs(feats[0] - feats[-1]).max() > 1e-3  # the square moved: different frames, different rows
    # the same frames embedded one at a time give the same rows (batched == single)
    centres = (np.arange(7) + 0.5) * 1.5
    picks = sample_frames(video, centres).pixels
    full = read_mp4(video)  # frame i at i / 10 s: centre 0.75 s lies between frames 7 and 8
    assert any(np.array_equal(picks[0], full[j]) for j in (7, 8))
    np.testing.assert_array_equal(picks[-1], full[-1])  # 9.75 s is past the last frame (9.4 s)
    ext.batch_size = 1  # type: ignore[attr-defined]
    single = ext.embed(picks)  # type: ignore[attr-defined]
    np.testing.assert_allclose(feats, single, atol=1e-5)


def test_a_full_clip_checkpoint_uses_its_vision_tower_and_projection(
    tmp_path: Path, one_thread: None
) -> None:
    """The OpenAI releases are full CLIPModel checkpoints: image_embeds == CLIPModel.get_image_features."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = CLIPConfig(
        text_config={
            **tower,
            "vocab_size": 99,
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
        },
        vision_config={**tower, "image_size": 32, "patch_size": 8},
        projection_dim=24,  # not the vision config's default 512
    )
    full = CLIPModel(config).eval()
    full.save_pretrained(tmp_path / "full")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "full"
    )
    ext = load_extractor("clip-vit-b32", model=str(tmp_path / "full"), device="cpu")
    assert ext.dim == 24
    frames = np.random.default_rng(0).integers(0, 255, size=(3, 40, 56, 3), dtype=np.uint8)
    pixels = ext.processor(images=list(frames), return_tensors="pt")["pixel_values"]  # type: ignore[attr-defined]
    with torch.inference_mode():
        ref = full.get_image_features(pixel_values=pixels)
    ref = getattr(ref, "pooler_output", ref)
    np.testing.assert_allclose(
        ext.embed(frames), torch.nn.functional.normalize(ref, dim=-1).numpy(), atol=1e-5
    )  # type: ignore[attr-defined]


def test_tiny_slowfast_any_clip_length_batched_equals_single(
    video: Path, tmp_path: Path, one_thread: None
) -> None:
    torch.manual_seed(0)
    net = SlowFast(TINY_SF)
    for m in net.modules():  # non-trivial BN statistics, so the test sees them
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    folder = save_slowfast(net.eval(), tmp_path / "sf")
    ext = load_extractor("slowfast-r50", model=str(folder), device="cpu", batch_size=4)
    assert ext.dim == TINY_SF.dim == 8 * 32 + 8 * 32 // 8
    feats = ext.extract(video, 2.5)  # 9.5 s -> 4 clips of 2.5 s
    assert feats.shape == (4, TINY_SF.dim) and np.isfinite(feats).all()
    assert np.abs(feats[0] - feats[-1]).max() > 1e-4
    ext.batch_size = 1  # type: ignore[attr-defined]
    np.testing.assert_allclose(ext.extract(video, 2.5), feats, atol=1e-5)
    assert ext.extract(video, 1.0).shape == (10, TINY_SF.dim)
    # a PyTorchVideo-style checkpoint file ({"model_state": ...}, "module." prefixes) loads the same weights
    pyth = tmp_path / "sf.pyth"
    torch.save({"model_state": {f"module.{k}": v for k, v in net.state_dict().items()}}, pyth)
    from masra.features.slowfast import _state_file

    again = SlowFast(TINY_SF)
    again.load_state_dict(_state_file(pyth), strict=True)
    x = torch.randn(2, 3, TINY_SF.frames, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(again.eval().features(x), load_slowfast(folder).features(x))


def test_slowfast_r50_has_pytorchvideos_layout() -> None:
    """Checked once against pytorchvideo 0.1.5's slowfast_r50 (same 662 keys and shapes, outputs equal
    to 3e-6 with random weights); here the layout is pinned without that package."""
    sd = SlowFast().state_dict()
    assert len(sd) == 662 and SlowFastConfig().dim == 2304
    shapes = {
        "blocks.0.multipathway_blocks.0.conv.weight": (64, 3, 1, 7, 7),
        "blocks.0.multipathway_blocks.1.conv.weight": (8, 3, 5, 7, 7),
        "blocks.0.multipathway_fusion.conv_fast_to_slow.weight": (16, 8, 7, 1, 1),
        "blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight": (256, 80, 1, 1, 1),
        "blocks.3.multipathway_blocks.0.res_blocks.5.branch2.conv_a.weight": (256, 1024, 3, 1, 1),
        "blocks.4.multipathway_blocks.1.res_blocks.2.branch2.conv_c.weight": (256, 64, 1, 1, 1),
        "blocks.6.proj.weight": (400, 2304),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert (
        sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k) == 34_566_488
    )


def test_registry_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from masra.pipelines.cli import main

    assert set(EXTRACTORS) == {"clip-vit-b32", "slowfast-r50", "appearance", "motion"}
    listed = CliRunner().invoke(main, ["features", "list"]).output.splitlines()
    assert [ln.split()[:2] for ln in listed] == [["clip-vit-b32", "512"], ["slowfast-r50", "2304"],
                                                  ["appearance", "16"], ["motion", "12"]]  # fmt: skip
    with pytest.raises(KeyError, match="unknown feature extractor 'i3d'"):
        load_extractor("i3d")
    with pytest.raises(ModelUnavailableError, match=r"SLOWFAST_8x8_R50\.pyth.*dl\.fbaipublicfiles") as err:
        load_extractor("slowfast-r50", model=str(tmp_path / "SLOWFAST_8x8_R50.pyth"))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="has no model"):
        load_extractor("motion", model="x")


@pytest.mark.slow
def test_real_size_architectures_give_the_standard_widths(tmp_path: Path) -> None:
    """CLIP ViT-B/32 and SlowFast R50 at their real sizes (random weights, built here) on a 4-s 320x240 video."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    rng = np.random.default_rng(1)
    mp4 = write_mp4(rng.integers(0, 255, size=(40, 240, 320, 3), dtype=np.uint8), tmp_path / "v.mp4", 10)
    clip_dir = tmp_path / "clip"
    config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=224, patch_size=32, projection_dim=512)  # fmt: skip
    CLIPVisionModelWithProjection(config).save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
        clip_dir
    )
    assert load_extractor("clip-vit-b32", model=str(clip_dir), device="cpu").extract(mp4, 2.0).shape == (
        2,
        512,
    )
    sf = load_extractor(
        "slowfast-r50", model=str(save_slowfast(SlowFast().eval(), tmp_path / "sf")), device="cpu"
    )
    feats = sf.extract(mp4, 2.0)
    assert feats.shape == (2, 2304) and np.isfinite(feats).all()


def test_the_qvhighlights_card_runs_both_model_extractors(
    video: Path, tmp_path: Path, one_thread: None
) -> None:
    """The shipped card's slowfast + clip types with tiny weights under its root (relative `model`)."""
    from masra.datasets.card import load_card
    from masra.datasets.features import l2_normalize
    from masra.features.extract import features_for_video, load_card_extractors

    build_tiny_clip(tmp_path / "models" / "clip", dim=24)
    save_slowfast(SlowFast(TINY_SF).eval(), tmp_path / "models" / "slowfast")
    over = {"root": str(tmp_path), "video_features.clip.model": "models/clip", "video_features.clip.dim": 24,
            "video_features.slowfast.model": "models/slowfast", "video_features.slowfast.dim": TINY_SF.dim}  # fmt: skip
    card = load_card("qvhighlights", over)
    extractors = load_card_extractors(card, device="cpu")
    got = features_for_video(video, card, extractors)
    assert got.features.shape == (5, TINY_SF.dim + 24)  # 9.5 s in 2-s clips
    want = np.concatenate(
        [l2_normalize(got.per_type["slowfast"]), l2_normalize(got.per_type["clip"])], axis=1
    )
    np.testing.assert_allclose(got.features, want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="gives 24-d features, the card says dim 512"):
        load_card_extractors(
            load_card("qvhighlights", {**over, "video_features.clip.dim": 512}), types=["clip"]
        )
