"""The training feature store: exact round trip, reopen, skipped rebuild, atomic builds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import masra.datasets.store_build as store_mod
from masra.datasets.card import DatasetCard, FeatureSource, TextFeatureSource
from masra.datasets.features import load_text_features, load_video_features
from masra.datasets.store import INDEX, FeatureStore, qid_key
from masra.datasets.store_build import build_feature_store
from masra.datasets.types import MissingFilesError

DIMS = {"a": 3, "b": 5}
TEXT_DIM = 4


def _world(root: Path, qids: list[int | str] | None = None, seed: int = 0) -> DatasetCard:
    """4 videos with per-type lengths that differ, 6 queries split over train/val, random features."""
    rng = np.random.default_rng(seed)
    qids = qids if qids is not None else [10, 11, 12, 13, 14, 15]
    vids = ["vB", "vA", "vC", "vD"]
    rows = [{"qid": q, "query": f"query {q}", "duration": 20, "vid": vids[i % 4]} for i, q in enumerate(qids)]
    ann = root / "ann"
    ann.mkdir(parents=True)
    for split, part in (("train", rows[:4]), ("val", rows[4:])):
        (ann / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in part))
    for i, vid in enumerate(vids):
        for name, dim in DIMS.items():
            length = 5 + i + (1 if name == "b" else 0)
            (root / name).mkdir(exist_ok=True)
            np.savez_compressed(root / name / f"{vid}.npz", features=rng.normal(size=(length, dim)))
    (root / "text").mkdir()
    for i, q in enumerate(qids):
        np.savez_compressed(
            root / "text" / f"qid{q}.npz",
            last_hidden_state=rng.normal(size=(2 + i % 3, TEXT_DIM)).astype(np.float32),
            pooler_output=rng.normal(size=TEXT_DIM).astype(np.float32),
        )
    tacos = isinstance(qids[0], str)
    return DatasetCard(
        name="tiny",
        format="tacos" if tacos else "charades_jsonl",
        root=root,
        annotations={"train": ann / "train.jsonl", "val": ann / "val.jsonl"},
        clip_len=2.0,
        max_clips=10,
        video_features=tuple(FeatureSource(n, root / n, d) for n, d in DIMS.items()),
        text_features=TextFeatureSource(root / "text", TEXT_DIM),
        video_dir=root / "videos",
        prior_dir=root / "priors",
    )


def test_round_trip_exact(tmp_path: Path) -> None:
    card = _world(tmp_path)
    path = build_feature_store(card, ["train", "val"])
    assert path == tmp_path / "store"
    st = FeatureStore.open(path)
    assert st.video_ids == ["vA", "vB", "vC", "vD"]
    assert st.qids == ["10", "11", "12", "13", "14", "15"]
    assert (st.video_dim, st.text_dim, st.clip_len) == (8, TEXT_DIM, 2.0)
    assert st.video_data.dtype == np.float16 and isinstance(st.video_data, np.memmap)
    for vid in st.video_ids:
        want = load_video_features(card, vid).astype(np.float16)
        got = st.video(vid)
        np.testing.assert_array_equal(got, want)
        assert np.shares_memory(got, st.video_data)  # a view, not a copy
        row = st.video_row(vid)
        start, length = int(st.video_offsets[row]), int(st.video_lengths[row])
        np.testing.assert_array_equal(st.video_data[start : start + length], want)
    assert int(st.video_lengths.sum()) == st.video_data.shape[0]
    for qid in (10, "12", 15):
        tokens, pooled = load_text_features(card, qid)
        np.testing.assert_array_equal(st.text(qid), tokens.astype(np.float16))
        np.testing.assert_array_equal(st.pooled(qid), pooled.astype(np.float16))
        assert np.shares_memory(st.text(qid), st.text_data)
    with pytest.raises(KeyError, match="video 'nope' is not in the feature store"):
        st.video("nope")
    with pytest.raises(KeyError, match="qid '99' is not in the feature store"):
        st.text(99)


def test_float32_store_and_string_qids(tmp_path: Path) -> None:
    card = _world(tmp_path, qids=["s1_0", "s1_1", "s2_0", "s3_0", "s4_0", "s4_1"])
    st = FeatureStore.open(build_feature_store(card, ["train"], tmp_path / "s32", dtype="float32"))
    assert st.qids == ["s1_0", "s1_1", "s2_0", "s3_0"]  # train only
    assert st.video_data.dtype == np.float32
    np.testing.assert_array_equal(st.video("vC"), load_video_features(card, "vC"))
    np.testing.assert_array_equal(st.text("s2_0"), load_text_features(card, "s2_0")[0])


def test_rebuild_skipped_when_up_to_date_and_redone_when_sources_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = _world(tmp_path)
    path = build_feature_store(card, ["train"])
    fingerprint = json.loads((path / INDEX).read_text())["fingerprint"]

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt although up to date")

    with monkeypatch.context() as m:
        m.setattr(store_mod, "_write", fail)
        assert build_feature_store(card, ["train"]) == path

    # A changed source file (new content and mtime) triggers a rebuild with the new values.
    new = np.full((9, DIMS["a"]), 2.0)
    np.savez_compressed(tmp_path / "a" / "vA.npz", features=new)
    os.utime(tmp_path / "a" / "vA.npz", ns=(1, 1))
    build_feature_store(card, ["train"])
    assert json.loads((path / INDEX).read_text())["fingerprint"] != fingerprint
    st = FeatureStore.open(path)
    np.testing.assert_array_equal(st.video("vA"), load_video_features(card, "vA").astype(np.float16))
    # Other splits or dtypes are a different store content: rebuilt too.
    build_feature_store(card, ["train", "val"])
    assert len(FeatureStore.open(path).qids) == 6
    assert not list(tmp_path.glob(".store.*"))  # no temp or old directories left


def test_failed_build_leaves_no_store_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = _world(tmp_path)
    real = store_mod.load_text_features

    def flaky(c: DatasetCard, qid: object) -> tuple[np.ndarray, np.ndarray]:
        if qid == 12:
            raise RuntimeError("killed")
        return real(c, qid)  # type: ignore[arg-type]

    monkeypatch.setattr(store_mod, "load_text_features", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        build_feature_store(card, ["train"])
    assert not (tmp_path / "store").exists()
    with pytest.raises(FileNotFoundError, match="no feature store"):
        FeatureStore.open(tmp_path / "store")
    assert not list(tmp_path.glob(".store.*"))

    monkeypatch.setattr(store_mod, "load_text_features", real)
    build_feature_store(card, ["val"])  # qids 14, 15
    monkeypatch.setattr(store_mod, "load_text_features", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        build_feature_store(card, ["train", "val"])
    assert FeatureStore.open(tmp_path / "store").qids == ["14", "15"]


def test_half_written_store_does_not_open(tmp_path: Path) -> None:
    card = _world(tmp_path)
    path = build_feature_store(card, ["train"])
    (path / INDEX).unlink()
    with pytest.raises(FileNotFoundError, match="no feature store"):
        FeatureStore.open(path)
    with pytest.raises(ValueError, match="is not a feature store"):
        build_feature_store(card, ["train"])


def test_missing_files_fail_before_writing(tmp_path: Path) -> None:
    card = _world(tmp_path)
    (tmp_path / "text" / "qid11.npz").unlink()
    with pytest.raises(MissingFilesError, match=r"1 text feature files \(of 4\) missing under .*: 11$"):
        build_feature_store(card, ["train"])
    assert not (tmp_path / "store").exists()


def test_bad_arguments(tmp_path: Path) -> None:
    card = _world(tmp_path)
    with pytest.raises(ValueError, match="dtype must be one of"):
        build_feature_store(card, ["train"], dtype="bfloat16")
    with pytest.raises(ValueError, match="at least one split"):
        build_feature_store(card, [])


def test_qid_key() -> None:
    assert qid_key(5) == "5" and qid_key(np.int64(5)) == "5" and qid_key("s1_0") == "s1_0"
    with pytest.raises(TypeError):
        qid_key(True)
    with pytest.raises(TypeError):
        qid_key(1.5)  # type: ignore[arg-type]


def test_leftovers_of_a_killed_build_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    card = _world(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = tmp_path / f".store.tmp-{int(proc.stdout)}"  # the pid of a process that has exited
    dead.mkdir()
    (dead / "video_data.npy").write_bytes(b"partial")
    path = build_feature_store(card, ["train"])
    assert not dead.exists()
    assert FeatureStore.open(path).qids == ["10", "11", "12", "13"]


def test_same_store_from_another_working_directory_is_not_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(tmp_path / "w")
    monkeypatch.chdir(tmp_path)
    rel = _world_card_at(Path("w"))
    path = build_feature_store(rel, ["train"]).resolve()
    monkeypatch.chdir(tmp_path / "w")
    monkeypatch.setattr(store_mod, "_write", None)  # any rebuild would fail
    assert build_feature_store(_world_card_at(Path(".")), ["train"]).resolve() == path


def _world_card_at(root: Path) -> DatasetCard:
    return DatasetCard(
        name="tiny",
        format="charades_jsonl",
        root=root,
        annotations={"train": root / "ann" / "train.jsonl"},
        clip_len=2.0,
        max_clips=10,
        video_features=tuple(FeatureSource(n, root / n, d) for n, d in DIMS.items()),
        text_features=TextFeatureSource(root / "text", TEXT_DIM),
        video_dir=root / "videos",
        prior_dir=root / "priors",
    )
