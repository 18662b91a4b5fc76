"""The Grounder: loading a checkpoint folder, batching over queries, and long videos by windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_model
from torch import Tensor, nn

from masra.grounding.checkpoint import CHECKPOINT_FORMAT
from masra.grounding.config import LossConfig, ModelConfig, PostprocessConfig
from masra.grounding.infer.grounder import Grounder, GrounderConfig, window_starts
from masra.grounding.model import build_model

VIDEO_DIM, TEXT_DIM, MAX_CLIPS = 12, 16, 16


def write_card(root: Path) -> Path:
    card = root / "tiny.yaml"
    card.write_text(
        "name: tiny\nformat: qvhighlights\nroot: .\nannotations: {}\nclip_len: 2.0\n"
        f"max_clips: {MAX_CLIPS}\nvideo_features: {{vis: {{dir: vis, dim: {VIDEO_DIM}}}}}\n"
        f"temporal_endpoint: true\ntext_features: {{dir: text, dim: {TEXT_DIM}}}\n"
    )
    return card


def write_checkpoint(root: Path) -> Path:
    """A checkpoint folder of a tiny random-weight model, in the trainer's layout."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        video_dim=VIDEO_DIM + 2, text_dim=TEXT_DIM, prior_dim=8, hidden_dim=32, num_heads=4, ffn_dim=64,
        num_queries=5, lrca_dim=16, dai_codebook_size=4,
    )  # fmt: skip
    folder = root / "best"
    folder.mkdir(parents=True)
    save_model(build_model(cfg), str(folder / "model.safetensors"))
    config = {
        "format": CHECKPOINT_FORMAT,
        "dataset": str(write_card(root)),
        "model": cfg.to_dict(),
        "loss": LossConfig().to_dict(),
        "train": {
            "max_clips": None,
            "max_text_len": 8,
            "postprocess": {"top_k": 4, "snap": False, "nms_iou": None},
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def grounder(tmp_path_factory: pytest.TempPathFactory) -> Grounder:
    return Grounder.from_pretrained(write_checkpoint(tmp_path_factory.mktemp("ckpt")))


def test_window_starts() -> None:
    assert window_starts(16, 16, 8) == [0]
    assert window_starts(17, 16, 8) == [0, 1]
    assert window_starts(40, 16, 8) == [0, 8, 16, 24]
    assert window_starts(41, 16, 8) == [0, 8, 16, 24, 25]


def test_from_pretrained_reads_the_checkpoint(grounder: Grounder) -> None:
    cfg = grounder.config
    assert (cfg.max_clips, cfg.video_dim, cfg.text_dim, cfg.postprocess.top_k, cfg.max_text_len) == (
        MAX_CLIPS,
        VIDEO_DIM,
        TEXT_DIM,
        4,
        8,
    )
    assert cfg.stride == 8
    assert not grounder.model.training


def test_predict_shapes_and_ranges(grounder: Grounder) -> None:
    rng = np.random.default_rng(0)
    video = rng.normal(size=(40, VIDEO_DIM)).astype(np.float32)
    [res] = grounder.predict(video, rng.normal(size=(5, TEXT_DIM)), duration=79.0)
    assert res.num_windows == 4
    assert res.saliency.shape == (40,)
    assert 1 <= len(res.windows) <= 4
    scores = [w[2] for w in res.windows]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= e <= 79.0 for s, e, _ in res.windows)


def test_batched_equals_single(grounder: Grounder) -> None:
    rng = np.random.default_rng(1)
    video = rng.normal(size=(30, VIDEO_DIM)).astype(np.float32)
    queries = [rng.normal(size=(n, TEXT_DIM)).astype(np.float32) for n in (3, 7, 12)]  # 12 > max_text_len
    batched = grounder.predict(video, queries)
    for q, b in zip(queries, batched, strict=True):
        [single] = grounder.predict(video, q)
        np.testing.assert_allclose(single.saliency, b.saliency, atol=1e-5)
        np.testing.assert_allclose(np.array(single.windows), np.array(b.windows), atol=1e-4)


def test_bad_inputs_are_named(grounder: Grounder) -> None:
    video = np.zeros((10, VIDEO_DIM + 2), np.float32)
    with pytest.raises(ValueError, match="temporal-endpoint dims are added by the Grounder"):
        grounder.predict(video, np.zeros((3, TEXT_DIM)))
    with pytest.raises(ValueError, match="exactly one of"):
        grounder.predict(np.zeros((10, VIDEO_DIM)))
    with pytest.raises(ValueError, match=r"query 0: features must be \(T > 0, 16\)"):
        grounder.predict(np.zeros((10, VIDEO_DIM)), np.zeros((3, 5)))


class FakeEncoder:
    """Maps each word to a fixed random vector (stands in for the text encoder)."""

    def encode_tokens(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for t in texts:
            toks = np.stack(
                [np.random.default_rng(abs(hash(w)) % 2**32).normal(size=TEXT_DIM) for w in t.split()]
            )
            out.append((toks.astype(np.float32), toks.mean(0)))
        return out


def test_query_text_goes_through_the_encoder(tmp_path: Path) -> None:
    g = Grounder.from_pretrained(write_checkpoint(tmp_path), text_encoder=FakeEncoder())
    video = np.random.default_rng(2).normal(size=(12, VIDEO_DIM)).astype(np.float32)
    by_text = g.predict(video, query_text=["a cat jumps", "the dog"])
    by_feats = g.predict(video, [t for t, _ in FakeEncoder().encode_tokens(["a cat jumps", "the dog"])])
    assert [r.query for r in by_text] == ["a cat jumps", "the dog"]
    assert by_text[0].windows == by_feats[0].windows


class MarkerModel(nn.Module):
    """Finds the clips whose features match the query's mean token (cosine > 0.99) in each window.

    Follows the model's forward contract: a confident span over the matching clips in query slot 0
    (or a low-confidence span at the window start when nothing matches), junk in the other slots,
    and the cosine similarity as saliency.
    """

    def forward(
        self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor
    ) -> dict[str, Tensor]:
        b, m, _ = video.shape
        v = nn.functional.normalize(video[..., :VIDEO_DIM], dim=-1)  # drop the endpoint dims
        t = (text * text_mask[..., None]).sum(1) / text_mask.sum(1, keepdim=True)
        sim = torch.einsum("bmd,bd->bm", v, nn.functional.normalize(t, dim=-1))  # (B, M)
        hit = sim > 0.99
        idx = torch.arange(m).float()
        found = hit.any(1)
        first = torch.where(hit, idx, torch.full_like(sim, m)).amin(1)
        last = torch.where(hit, idx, torch.full_like(sim, -1)).amax(1) + 1
        first, last = torch.where(found, first, 0.0), torch.where(found, last, 1.0)
        spans = torch.tensor([[0.5, 0.1]]).repeat(b, 3, 1)  # (B, 3, 2) junk in slots 1, 2
        spans[:, 0] = torch.stack([(first + last) / 2 / m, (last - first) / m], dim=-1)
        logits = torch.tensor([[-4.0, 4.0]]).repeat(b, 3, 1)
        logits[:, 0] = torch.where(found[:, None], torch.tensor([6.0, -6.0]), torch.tensor([-2.0, 2.0]))
        return {"pred_logits": logits, "pred_spans": spans, "saliency": sim}


def test_long_video_answer_past_the_first_window() -> None:
    rng = np.random.default_rng(3)
    video = rng.normal(size=(300, VIDEO_DIM)).astype(np.float32)  # 600 s; one pass sees 32 clips (64 s)
    marker = rng.normal(size=VIDEO_DIM).astype(np.float32)
    video[200:210] = marker + 0.01 * rng.normal(size=(10, VIDEO_DIM))  # the answer: 400 s - 420 s
    query = np.tile(marker, (3, 1))  # (T, Dt) with Dt = Dv for this stand-in model
    cfg = GrounderConfig(
        clip_len=2.0,
        max_clips=32,
        video_dim=VIDEO_DIM,
        text_dim=VIDEO_DIM,
        postprocess=PostprocessConfig(top_k=5),
    )
    g = Grounder(MarkerModel(), cfg)
    [res] = g.predict(video, query)
    assert res.num_windows == len(window_starts(300, 32, 16)) == 18
    start, end, score = res.windows[0]
    assert (start, end) == (400.0, 420.0)
    assert score > 0.99
    # The windows that saw the answer only in part rank far below the one that saw it whole.
    assert all(c < 0.51 * score for s, e, c in res.windows[1:] if s < 420 and e > 400)
    assert 200 <= int(np.argmax(res.saliency)) < 210
    # A single pass over the first window (a 64-s cap) cannot find it.
    [capped] = g.predict(video[:32], query)
    assert capped.windows[0][2] < 0.5


def test_many_videos_batched_equals_one_by_one(grounder: Grounder) -> None:
    rng = np.random.default_rng(4)
    videos = [
        rng.normal(size=(n, VIDEO_DIM)).astype(np.float32) for n in (7, 16, 29)
    ]  # short, exact, windowed
    queries = [[rng.normal(size=(k, TEXT_DIM)).astype(np.float32) for k in (2, 5)] for _ in videos]
    together = grounder.predict_many(videos, queries, durations=[13.0, None, None])
    for v, (video, qs) in enumerate(zip(videos, queries, strict=True)):
        alone = grounder.predict(video, qs, duration=13.0 if v == 0 else None)
        for a, b in zip(alone, together[v], strict=True):
            assert a.num_windows == b.num_windows
            np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-5)
            np.testing.assert_allclose(np.array(a.windows), np.array(b.windows), atol=1e-4)
    assert all(e <= 13.0 for _, e, _ in together[0][0].windows)
