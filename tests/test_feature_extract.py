"""`masra features extract` and masra.features.extract on the fixture's own mp4s (hand-crafted extractors).

The videos are rendered and encoded exactly as the fixture build does, and their reference features
are what the build stores (decode all frames, the fixture extractor). The extractor path (video_io
sampling on the clip grid) must reproduce them bit for bit, through the CLI and for one video.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from masra.datasets.card import DatasetCard, load_card
from masra.datasets.features import load_video_features
from masra.features.extract import features_for_video, load_card_extractors
from masra.features.handcrafted_frames import extract
from masra.fixture.language import query_sentence
from masra.fixture.render import read_mp4, render_frames, write_mp4
from masra.fixture.world import WorldConfig, make_world
from masra.pipelines.cli import main

WORLD = WorldConfig(seed=3, train_videos=2, val_videos=1, min_duration=24.0, max_duration=30.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """A folder with the world's mp4s, a broken mp4 and an annotation file; the reference features."""
    root = tmp_path_factory.mktemp("fx")
    refs: dict[str, dict[str, np.ndarray]] = {}
    rows = []
    for spec in make_world(WORLD, query_sentence):
        mp4 = write_mp4(
            render_frames(spec, WORLD.fps, WORLD.frame_size), root / "videos" / f"{spec.vid}.mp4", WORLD.fps
        )
        refs[spec.vid] = extract(read_mp4(mp4), WORLD.fps, WORLD.clip_len)
        rows += [
            {"qid": q.qid, "query": q.text, "duration": spec.duration, "vid": spec.vid} for q in spec.queries
        ]
    (root / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, refs


def _card(root: Path, **over: object) -> DatasetCard:
    return load_card("fixture", {"root": str(root), **over})


def _run(args: list[str]) -> dict[str, object]:
    res = CliRunner().invoke(main, ["features", "extract", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out: dict[str, object] = json.loads(res.output[res.output.index("{") :])
    return out


def test_cli_reproduces_the_fixture_features_and_lists_broken_videos(world: tuple, tmp_path: Path) -> None:
    src, refs = world
    root = tmp_path / "root"
    out = _run(["--dataset", "fixture", "--set", f"root={root}", "--videos", str(src / "videos")])
    videos = out["videos"]
    assert isinstance(videos, dict)
    assert videos["extracted"] == len(refs) and videos["types"] == ["appearance", "motion"]
    [failed] = videos["failed"]
    assert failed["vid"] == "broken" and "broken.mp4" in failed["reason"]
    assert json.loads((root / "failed_videos.jsonl").read_text())["vid"] == "broken"
    for vid, ref in refs.items():
        for kind, arr in ref.items():
            with np.load(root / "features" / kind / f"{vid}.npz") as npz:
                assert npz.files == ["features"]
                np.testing.assert_array_equal(npz["features"], arr)
    assert not list(root.rglob(".*tmp*")), "temporary files left behind"
    # two videos at once (threads) write the same files
    root2 = tmp_path / "root2"
    par = _run(
        ["--dataset", "fixture", "--set", f"root={root2}", "--videos", str(src / "videos"), "--workers", "2"]
    )
    assert isinstance(par["videos"], dict) and par["videos"]["extracted"] == len(refs)
    for p in sorted((root / "features").rglob("*.npz")):
        assert (root2 / p.relative_to(root)).read_bytes() == p.read_bytes(), p

    # resumable: a second run skips every finished video; a deleted file is redone alone
    vid = sorted(refs)[0]
    keep = root / "features" / "motion" / f"{sorted(refs)[1]}.npz"
    before = keep.stat().st_mtime_ns
    (root / "features" / "appearance" / f"{vid}.npz").unlink()
    again = _run(["--dataset", "fixture", "--set", f"root={root}", "--videos", str(src / "videos")])["videos"]
    assert isinstance(again, dict)
    assert (again["extracted"], again["skipped_finished"], len(again["failed"])) == (1, len(refs) - 1, 1)
    assert keep.stat().st_mtime_ns == before
    with np.load(root / "features" / "appearance" / f"{vid}.npz") as npz:
        np.testing.assert_array_equal(npz["features"], refs[vid]["appearance"])


def test_one_video_gives_what_the_store_reads(world: tuple, tmp_path: Path) -> None:
    """features_for_video(mp4) == load_video_features of the stored files (the Grounder's contract)."""
    src, refs = world
    root = tmp_path / "root"
    card = _card(root)
    for vid, ref in refs.items():
        for kind, arr in ref.items():
            (root / "features" / kind).mkdir(parents=True, exist_ok=True)
            np.savez(root / "features" / kind / f"{vid}.npz", features=arr)
    extractors = load_card_extractors(card)
    for vid in refs:
        got = features_for_video(src / "videos" / f"{vid}.mp4", card, extractors)
        np.testing.assert_array_equal(got.features, load_video_features(card, vid))
        assert got.duration == pytest.approx(len(refs[vid]["motion"]) * card.clip_len)


def test_list_file_type_subset_and_other_clip_length(world: tuple, tmp_path: Path) -> None:
    src, refs = world
    vids = sorted(refs)[:2]
    listing = tmp_path / "list.txt"
    listing.write_text("# two videos\n" + "".join(f"{src / 'videos' / v}.mp4\n" for v in vids))
    root = tmp_path / "root"
    out = _run(["-d", "fixture", "--set", f"root={root}", "--set", "clip_len=1.0", "--videos", str(listing),
                "--type", "motion"])["videos"]  # fmt: skip
    assert isinstance(out, dict) and out["extracted"] == 2 and out["types"] == ["motion"]
    assert not (root / "features" / "appearance").exists()
    for vid in vids:
        frames = read_mp4(src / "videos" / f"{vid}.mp4")
        with np.load(root / "features" / "motion" / f"{vid}.npz") as npz:  # 1-s clips: 4 frames each
            np.testing.assert_array_equal(npz["features"], extract(frames, WORLD.fps, 1.0)["motion"])


def test_queries_write_text_features_with_the_cards_encoder(world: tuple, tmp_path: Path) -> None:
    src, _ = world
    root = tmp_path / "root"
    out = _run(["-d", "fixture", "--set", f"root={root}", "--queries", str(src / "queries.jsonl")])
    assert "videos" not in out  # --queries alone: text only
    q = out["queries"]
    assert isinstance(q, dict) and q["encoder"] == "minilm" and q["written"] == q["queries"] > 0
    files = sorted((root / "features" / "text").glob("qid*.npz"))
    assert len(files) == q["queries"]
    with np.load(files[0]) as npz:
        tokens, pooled = npz["last_hidden_state"], npz["pooler_output"]
    assert tokens.ndim == 2 and tokens.shape[1] == 384 and pooled.shape == (384,)
    assert np.linalg.norm(pooled) == pytest.approx(1.0, abs=1e-5)
    again = _run(["-d", "fixture", "--set", f"root={root}", "--queries", str(src / "queries.jsonl")])[
        "queries"
    ]
    assert isinstance(again, dict) and (again["written"], again["skipped_finished"]) == (0, q["queries"])


def test_card_without_extractors_says_which_types(tmp_path: Path) -> None:
    card = load_card("openworld", {"root": str(tmp_path)})
    with pytest.raises(ValueError, match=r"name no extractor.*extractor: NAME"):
        load_card_extractors(card)
    res = CliRunner().invoke(main, ["features", "extract", "-d", "fixture", "--set", f"root={tmp_path}",
                                    "--videos", str(tmp_path / "nothing")])  # fmt: skip
    assert res.exit_code == 1 and "no such folder or list file" in res.output


def test_a_failed_write_leaves_neither_a_partial_file_nor_a_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from masra.features import extract as mod

    target = tmp_path / "feats" / "v.npz"
    mod.save_npz_atomic(target, features=np.ones((3, 2), np.float32))

    def broken(f: object, **arrays: np.ndarray) -> None:
        f.write(b"PK\x03\x04 half a zip")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(mod.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        mod.save_npz_atomic(target, features=np.zeros((3, 2), np.float32))
    with np.load(target) as npz:  # the earlier complete file is untouched
        np.testing.assert_array_equal(npz["features"], np.ones((3, 2), np.float32))
    assert [p.name for p in target.parent.iterdir()] == ["v.npz"]
