"""Feature readers: normalise/cut/concat, temporal endpoints, text features, missing-file errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masra.datasets.card import DatasetCard, FeatureSource, TextFeatureSource
from masra.datasets.features import (
    find_missing,
    load_text_features,
    load_video_features,
    npz_shape,
    temporal_endpoint_features,
)
from masra.datasets.types import MissingFilesError


def _card(root: Path, dims: tuple[int, int] = (3, 5), text_dim: int = 4) -> DatasetCard:
    return DatasetCard(
        name="t",
        format="qvhighlights",
        root=root,
        annotations={},
        clip_len=2.0,
        max_clips=10,
        video_features=(
            FeatureSource("a", root / "a", dims[0]),
            FeatureSource("b", root / "b", dims[1], key="feats"),
        ),
        text_features=TextFeatureSource(root / "text", text_dim),
        video_dir=root / "videos",
        prior_dir=root / "priors",
    )


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def test_video_features_normalised_cut_and_concatenated(tmp_path: Path) -> None:
    card = _card(tmp_path)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 3)).astype(np.float32) * 5
    b = rng.normal(size=(6, 5)).astype(np.float64)
    a[2] = 0.0  # an all-zero clip stays zero instead of dividing by zero
    _save(tmp_path / "a" / "v1.npz", features=a)
    _save(tmp_path / "b" / "v1.npz", feats=b)

    x = load_video_features(card, "v1")
    assert x.dtype == np.float32 and x.shape == (6, 8)
    np.testing.assert_allclose(
        x[:, :3], a[:6] / np.maximum(np.linalg.norm(a[:6], axis=1, keepdims=True), 1e-6)
    )
    np.testing.assert_allclose(x[:, 3:], b / np.linalg.norm(b, axis=1, keepdims=True), rtol=1e-6)
    norms = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(np.delete(norms, 2), np.sqrt(2.0), rtol=1e-5)
    assert norms[2] == pytest.approx(1.0, rel=1e-5)  # only type b contributes on the zero clip

    cut = load_video_features(card, "v1", max_clips=4)
    np.testing.assert_array_equal(cut, x[:4])
    assert load_video_features(card, "v1", max_clips=100).shape == (6, 8)
    with pytest.raises(ValueError, match="max_clips must be > 0"):
        load_video_features(card, "v1", max_clips=0)


def test_video_feature_errors_name_the_file(tmp_path: Path) -> None:
    card = _card(tmp_path)
    _save(tmp_path / "a" / "v1.npz", features=np.ones((4, 2)))  # dim 2, card says 3
    _save(tmp_path / "b" / "v1.npz", feats=np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"a/v1.npz: 'features' has shape \(4, 2\); the card says \(L, 3\)"):
        load_video_features(card, "v1")
    _save(tmp_path / "a" / "v1.npz", other=np.ones((4, 3)))
    with pytest.raises(KeyError, match=r"no array 'features' \(arrays present: \['other'\]\)"):
        load_video_features(card, "v1")


def test_npz_never_unpickles(tmp_path: Path) -> None:
    card = _card(tmp_path)
    _save(tmp_path / "a" / "v1.npz", features=np.array([{"x": 1}], dtype=object))
    _save(tmp_path / "b" / "v1.npz", feats=np.ones((4, 5)))
    with pytest.raises(ValueError, match="not a readable npz file"):
        load_video_features(card, "v1")


def test_npz_shape_reads_header(tmp_path: Path) -> None:
    _save(tmp_path / "x.npz", features=np.zeros((11, 3), dtype=np.float16))
    assert npz_shape(tmp_path / "x.npz", "features") == (11, 3)
    with pytest.raises(KeyError, match="no array 'nope'"):
        npz_shape(tmp_path / "x.npz", "nope")


def test_temporal_endpoint_features() -> None:
    tef = temporal_endpoint_features(4)
    assert tef.dtype == np.float32
    np.testing.assert_allclose(tef, [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1.0]])
    assert temporal_endpoint_features(1).tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError):
        temporal_endpoint_features(0)


def test_text_features(tmp_path: Path) -> None:
    card = _card(tmp_path)
    tokens = np.arange(12, dtype=np.float64).reshape(3, 4)
    _save(tmp_path / "text" / "qid7.npz", last_hidden_state=tokens, pooler_output=np.ones(4))
    _save(tmp_path / "text" / "qids13-d2_0.npz", last_hidden_state=tokens[:1], pooler_output=np.zeros(4))
    t, p = load_text_features(card, 7)
    assert t.dtype == np.float32 and t.shape == (3, 4) and p.shape == (4,)
    np.testing.assert_array_equal(t, tokens)
    t, _ = load_text_features(card, "s13-d2_0")
    assert t.shape == (1, 4)
    _save(tmp_path / "text" / "qid8.npz", last_hidden_state=tokens, pooler_output=np.ones(5))
    with pytest.raises(ValueError, match=r"qid8.npz: 'pooler_output' has shape \(5,\)"):
        load_text_features(card, 8)
    _save(tmp_path / "text" / "qid9.npz", last_hidden_state=tokens)
    with pytest.raises(KeyError, match="no array 'pooler_output'"):
        load_text_features(card, 9)


def test_find_missing_lists_first_ids_and_count(tmp_path: Path) -> None:
    card = _card(tmp_path)
    for vid in ("v0", "v1"):
        _save(tmp_path / "a" / f"{vid}.npz", features=np.ones((2, 3)))
        _save(tmp_path / "b" / f"{vid}.npz", feats=np.ones((2, 5)))
    _save(tmp_path / "text" / "qid0.npz", last_hidden_state=np.ones((2, 4)), pooler_output=np.ones(4))
    find_missing(card, ["v0", "v1", "v0"], [0])  # all present: no error

    vids = ["v0", "v1"] + [f"x{i}" for i in range(7)]
    with pytest.raises(MissingFilesError) as err:
        find_missing(card, vids, [0])
    msg = str(err.value)
    assert msg.startswith("7 a video feature files (of 9) missing under")
    assert "x0, x1, x2, x3, x4 (and 2 more)" in msg
    assert err.value.ids == [f"x{i}" for i in range(7)]

    (tmp_path / "b" / "v1.npz").unlink()
    with pytest.raises(MissingFilesError, match=r"1 b video feature files \(of 2\) missing under .*b: v1$"):
        find_missing(card, ["v0", "v1"], [0])

    with pytest.raises(
        MissingFilesError, match=r"2 text feature files \(of 3\) missing under .*text: 5, s1_0$"
    ):
        find_missing(card, ["v0"], [0, 5, "s1_0"])
