"""The shared text encoder: MiniLM (offline package) and the CLIP branch on a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from masra.text_encoder import TextEncoder


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder.load("minilm")


def test_minilm_pooled_is_mean_of_tokens(minilm: TextEncoder) -> None:
    texts = ["a red circle moves to the left", "the blue square grows", "an empty grey background"]
    emb = minilm.encode(texts, batch_size=2)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    toks = minilm.encode_tokens(texts, batch_size=2)
    lengths = [t.shape[0] for t, _ in toks]
    assert len(set(lengths)) > 1, "padding must be removed: texts of different lengths"
    for (tok, pooled), e in zip(toks, emb, strict=True):
        assert tok.shape[1] == 384
        mean = tok.mean(axis=0)
        np.testing.assert_allclose(mean / np.linalg.norm(mean), e, atol=1e-5)
        np.testing.assert_allclose(pooled, e, atol=1e-6)


def test_minilm_batching_and_duplicates_do_not_change_results(minilm: TextEncoder) -> None:
    texts = ["a green triangle moves up", "a yellow square shrinks", "a green triangle moves up"]
    one_by_one = np.stack([minilm.encode([t])[0] for t in texts])
    batched = minilm.encode(texts, batch_size=8)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(batched[0], batched[2])
    np.testing.assert_array_equal(minilm.encode(texts), minilm.encode(texts))


def test_minilm_similar_sentences_score_higher(minilm: TextEncoder) -> None:
    a, b, c = minilm.encode(
        [
            "a red ball rolls to the left",
            "a red circle moves leftwards",
            "the stock market fell sharply today",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.2


def test_bad_input_is_refused(minilm: TextEncoder) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        minilm.encode(["x"], batch_size=0)
    with pytest.raises(TypeError, match="strings"):
        minilm.encode(["x", 3])  # type: ignore[list-item]
    assert minilm.encode([]).shape == (0, 384)


def _tiny_clip(folder: Path) -> Path:
    """A random CLIPTextModelWithProjection with a hand-written byte-level BPE vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab_list = [
        *letters,
        *(ch + "</w>" for ch in letters),
        "re",
        "red</w>",
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nr e\nre d</w>\n")
    tok = CLIPTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=40,
        projection_dim=32,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    CLIPTextModelWithProjection(cfg).save_pretrained(folder)
    return folder


def test_clip_branch_uses_projected_text_embeds(tmp_path: Path) -> None:
    path = _tiny_clip(tmp_path)
    enc = TextEncoder.load(str(path), max_length=16)
    assert enc.kind == "clip" and enc.dim == 32 and enc.name == path.name
    texts = ["red box", "a red circle moves left", "red"]
    emb = enc.encode(texts, batch_size=2)
    assert emb.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        ids = enc.tokenizer(["red box"], return_tensors="pt")
        ref = enc.model(**ids).text_embeds[0].numpy()
    np.testing.assert_allclose(emb[0], ref / np.linalg.norm(ref), atol=1e-5)
    toks = enc.encode_tokens(texts)
    full = [len(enc.tokenizer(t)["input_ids"]) for t in texts]
    assert full[1] > 16, "the long text must exercise truncation"
    assert [t.shape[0] for t, _ in toks] == [min(n, 16) for n in full]
    np.testing.assert_allclose(toks[1][1], emb[1], atol=1e-5)
    # A CLIP pooled vector is not a token mean: the branch must not mean-pool.
    mean = toks[1][0].mean(axis=0)
    assert not np.allclose(mean / np.linalg.norm(mean), emb[1], atol=1e-3)
