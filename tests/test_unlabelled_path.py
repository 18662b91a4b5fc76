"""The user's path for a folder of unlabelled videos, through the `masra` CLI, from raw mp4s.

A card with no annotation files (a collection of the fixture's train videos, copied into a folder of
their own), then: `masra features extract` (the card's extractors) -> `masra priors import` (the
fixture's reference priors written as the JSON lines a user would bring) -> `masra priors embed` ->
`masra train --set label_fraction=0 --set pseudo_queries.weight=1 --set eval_split=null` (trains from
the priors' events alone, no evaluation) -> `masra predict --video` finds windows by text in those
videos. The slow test runs `masra priors generate` (the tiny random MLLM) on the same folder, whose
card lists no video.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _train_world import TINY_MODEL
from click.testing import CliRunner, Result

from masra.pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]
CARD = """\
# A collection of videos with features and priors but no labelled split: no annotations, no format.
name: mine
root: {root}
clip_len: 2.0
max_clips: 32
video_features:
  appearance: {{dir: features/appearance, dim: 16, extractor: appearance}}
  motion: {{dir: features/motion, dim: 12, extractor: motion}}
text_features: {{dim: 384}}
text_encoder: minilm
"""


def _cli(*args: str) -> Result:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, f"masra {' '.join(args)} failed:\n{res.output}"
    return res


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the collection's card, the fixture root): 6 fixture train videos in a folder of their own."""
    base = tmp_path_factory.mktemp("unlabelled")
    fixture = base / "fx"
    _cli("fixture", "--out", str(fixture), "--seed", "0", "--train-videos", "6", "--val-videos", "2")
    root = base / "mine"
    (root / "videos").mkdir(parents=True)
    for mp4 in sorted((fixture / "videos").glob("fixture_train_*.mp4")):
        shutil.copy(mp4, root / "videos" / mp4.name)
    card = root / "mine.yaml"
    card.write_text(CARD.format(root=root), encoding="utf-8")
    return card, fixture


def test_train_from_priors_alone_and_find_moments_by_text(
    collection: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    card, fixture = collection
    root = card.parent
    _cli("features", "extract", "--dataset", str(card))
    assert len(list((root / "features" / "motion").glob("*.npz"))) == 6

    # The priors a user brings: here the fixture's reference events and captions of these videos.
    rows = pq.read_table(fixture / "priors" / "reference" / "shard-00000.parquet").to_pylist()
    rows = [r for r in rows if (root / "videos" / f"{r['video_id']}.mp4").is_file()]
    keys = ("duration", "events", "clip_captions")
    lines = [json.dumps({"vid": r["video_id"], **{k: r[k] for k in keys}}) for r in rows]
    (root / "priors.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _cli("priors", "import", str(root / "priors.jsonl"), "--dataset", str(card), "--priors-run", "mine")
    _cli("priors", "embed", "--dataset", str(card), "--priors-run", "mine")

    run = root / "run"
    sets = {
        "label_fraction": 0,
        "pseudo_queries.weight": 1,
        "eval_split": "null",
        "priors_run": "mine",
        "epochs": 3,
        "batch_size": 8,
        "mixed_precision": "'no'",  # quoted: YAML reads a bare no as false
        "cpu_threads": 1,
        **{f"model.{k}": v for k, v in TINY_MODEL.items()},
    }
    args = ["train", "--dataset", str(card), "--no-config", "--out", str(run)]
    args += [w for k, v in sets.items() for w in ("--set", f"{k}={v}")]
    with caplog.at_level(logging.INFO, logger="masra"):
        _cli(*args)
    assert "training from priors only (card 'mine' has no annotation file for split 'train')" in caplog.text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pseudo_queries"]["priors_only"] and summary["pseudo_queries"]["source"] == "imported"
    report = summary["data"]["train"]["pseudo_queries"]
    assert report["videos"] == 6 and report["kept"] > 6
    assert report["generic_texts"] == ["the empty background with no object"]
    assert summary["best_metrics"] == {} and summary["priors"]["run"] == "mine"
    assert (root / "priors" / "mine" / "pseudo_queries" / "minilm" / "index.json").is_file()

    vid = rows[0]["video_id"]
    event = next(e for e in rows[0]["events"] if "background" not in e["text"])
    mp4 = root / "videos" / f"{vid}.mp4"
    res = _cli(
        "predict", "--checkpoint", str(run / "best"), "--video", str(mp4), "--query", event["text"], "--json"
    )
    [pred] = [json.loads(x[x.index("{") :]) for x in res.output.splitlines() if "pred_relevant_windows" in x]
    windows = pred["pred_relevant_windows"]
    assert pred["query"] == event["text"] and windows
    assert all(0.0 <= s < e <= rows[0]["duration"] + 2.0 for s, e, _ in windows)


def test_the_videos_of_a_card_without_annotations(collection: tuple[Path, Path]) -> None:
    from masra.datasets.card import load_card
    from masra.prior_gen.runs import videos_from_folder

    card, _ = collection
    items = videos_from_folder(load_card(str(card)).video_dir)
    assert [i.vid for i in items] == [f"fixture_train_{i:04d}" for i in range(6)]
    assert all(i.path is not None and i.path.is_file() and i.duration > 0 for i in items)
    with pytest.raises(FileNotFoundError, match="no video files"):
        videos_from_folder(card.parent / "features")


@pytest.mark.slow
def test_priors_generate_on_a_card_without_annotations(collection: tuple[Path, Path], tmp_path: Path) -> None:
    """Stage 1 on the collection: the videos come from the card's video folder (tiny random MLLM)."""
    card, _ = collection
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_tiny_models.py"),
            "--out",
            str(tmp_path),
            "--models",
            "qwen2_5_vl",
        ],
        check=True,
        capture_output=True,
    )
    out = tmp_path / "run"
    budgets = ["--set", "priors.event_max_tokens=32", "--set", "priors.caption_max_tokens=8"]
    budgets += ["--set", "priors.max_frames=8", "--set", "priors.batch_size=32"]
    model = str(tmp_path / "qwen2_5_vl")
    _cli("priors", "generate", "--dataset", str(card), "--model", model, "--backend", "transformers",
         "--out", str(out), "--limit", "2", *budgets)  # fmt: skip
    rows = pq.read_table(sorted(out.glob("part-*.parquet"))).to_pylist()
    assert sorted(r["video_id"] for r in rows) == ["fixture_train_0000", "fixture_train_0001"]
    assert all(r["duration"] > 0 and r["source"] == "mllm" for r in rows)
