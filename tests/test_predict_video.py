"""The fixture's raw mp4s through `masra predict --video` give what its stored features give.

A small fixture is built with `masra fixture`, a tiny checkpoint is trained on it, and each val video
is grounded twice: from its mp4 (the card's hand-crafted extractors, masra/features/) and from its
stored feature files (`--vid`). The windows, scores included, must be the same; the same holds for
`Grounder.predict_video` on videos longer than the trained length (several windows).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _fixture_ckpt import build_fixture_checkpoint
from click.testing import CliRunner

from masra.datasets.card import load_card
from masra.datasets.features import load_video_features
from masra.datasets.readers import load_queries
from masra.pipelines.cli import main


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(fixture root, best checkpoint) of a 2-epoch tiny run on a 6 + 2 video fixture."""
    return build_fixture_checkpoint(tmp_path_factory.mktemp("fxrun"))


def _json_rows(output: str) -> list[dict[str, object]]:
    rows = [line[line.index("{") :] for line in output.splitlines() if '"pred_relevant_windows"' in line]
    assert rows, output
    return [json.loads(row) for row in rows]


def _predict(ckpt: Path, query: str, *args: str) -> list[dict[str, object]]:
    res = CliRunner().invoke(main, ["predict", "--checkpoint", str(ckpt), "--query", query, "--json", *args])
    assert res.exit_code == 0, res.output
    return _json_rows(res.output)


def test_video_gives_the_top_window_of_its_stored_features(fixture_run: tuple[Path, Path]) -> None:
    root, ckpt = fixture_run
    card = load_card("fixture", {"root": str(root)})
    queries, _ = load_queries(card, "val")
    seen = set()
    for q in queries:
        if q.vid in seen:
            continue
        seen.add(q.vid)
        mp4 = root / "videos" / f"{q.vid}.mp4"
        assert mp4.is_file()
        [from_video] = _predict(ckpt, q.query, "--video", str(mp4))
        [from_files] = _predict(ckpt, q.query, "--vid", q.vid)
        top_video = from_video["pred_relevant_windows"][0]  # type: ignore[index]
        top_files = from_files["pred_relevant_windows"][0]  # type: ignore[index]
        assert top_video == top_files, (q.vid, top_video, top_files)
        assert from_video == from_files  # every window and score, not only the top one
    assert len(seen) == 2


def test_table_output_names_clips_and_passes(fixture_run: tuple[Path, Path]) -> None:
    root, ckpt = fixture_run
    vid = "fixture_val_0000"
    n = load_video_features(load_card("fixture", {"root": str(root)}), vid).shape[0]
    out = CliRunner().invoke(
        main,
        [
            "predict",
            "--checkpoint",
            str(ckpt),
            "--video",
            str(root / "videos" / f"{vid}.mp4"),
            "--query",
            "a red circle",
        ],
    )
    assert out.exit_code == 0, out.output
    assert f"({n} clips, 1 model pass(es))" in out.output
    assert len([line for line in out.output.splitlines() if re.match(r"\s+\d+\. ", line)]) >= 1


def test_predict_video_on_videos_longer_than_the_trained_length(fixture_run: tuple[Path, Path]) -> None:
    """max_clips 6 (12 s): each fixture video takes several windows, merged as for stored features."""
    from masra.grounding.infer.grounder import Grounder

    root, ckpt = fixture_run
    card = load_card("fixture", {"root": str(root)})
    g = Grounder.from_pretrained(ckpt, card=card, max_clips=6)
    queries, _ = load_queries(card, "val")
    for q in queries[:3]:
        [got] = g.predict_video(root / "videos" / f"{q.vid}.mp4", query_text=q.query)
        feats = load_video_features(card, q.vid)
        [want] = g.predict(feats, query_text=q.query, duration=got.extra["duration"])
        assert got.num_windows > 1 and got.num_windows == want.num_windows
        assert got.windows == want.windows
        assert got.extra["num_clips"] == feats.shape[0]
        assert got.extra["duration"] == pytest.approx(feats.shape[0] * card.clip_len)
