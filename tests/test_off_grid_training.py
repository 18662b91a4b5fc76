"""Training on real-shaped data: durations off the clip grid, videos longer than max_clips, features of
floor, round and ceil length, and priors imported with another caption count per video.

Through the CLI as a user runs it: ``masra priors import`` -> ``masra priors embed`` -> ``masra train``.
The run must start and finish, and ``summary.json`` must count what was cut, fitted and off the grid.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from masra.datasets.grid import num_clips
from masra.grounding.data.priors import edge_share_from_error
from masra.pipelines.cli import main

CLIP_LEN, MAX_CLIPS, DV, DT = 1.0, 12, 6, 8
# (duration s, feature length rule): Charades-like fractional durations, two longer than max_clips.
VIDEOS = {
    "a": (7.3, "ceil"),
    "b": (9.6, "floor"),
    "c": (10.0, "ceil"),
    "d": (8.45, "round"),
    "e": (6.5, "extra"),  # an extractor that writes one clip past the grid
    "f": (15.7, "floor"),  # longer than max_clips
    "g": (20.2, "ceil"),  # longer than max_clips
    "h": (11.2, "round"),
}
RULES = {"floor": math.floor, "round": lambda d: math.floor(d + 0.5), "ceil": math.ceil}


def _length(duration: float, rule: str) -> int:
    return num_clips(duration, CLIP_LEN) + 1 if rule == "extra" else max(1, int(RULES[rule](duration)))


def invoke(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offgrid")
    rng = np.random.default_rng(0)
    for sub in ("vis", "txt"):
        (root / sub).mkdir()
    recs, prior_rows, qid = [], [], 0
    for vid, (duration, rule) in VIDEOS.items():
        n = _length(duration, rule)
        np.savez(root / "vis" / f"{vid}.npz", features=rng.normal(size=(n, DV)).astype(np.float32))
        for _ in range(2):
            s = float(rng.uniform(0, duration - 2.0))
            recs.append(
                {"qid": qid, "query": f"someone in video {vid}", "vid": vid, "duration": duration,
                 "relevant_windows": [[round(s, 2), round(min(duration, s + 2.5), 2)]]}
            )  # fmt: skip
            np.savez(
                root / "txt" / f"qid{qid}.npz",
                last_hidden_state=rng.normal(size=(4, DT)).astype(np.float32),
                pooler_output=rng.normal(size=(DT,)).astype(np.float32),
            )
            qid += 1
        caps = [f"caption {i} of {vid}" for i in range(int(rng.integers(3, 30)))]  # any count: refitted
        prior_rows.append(
            {"vid": vid, "duration": duration, "clip_captions": caps,
             "events": [{"start": 0.0, "end": round(duration / 2, 2), "text": "a person walks in"},
                        {"start": round(duration / 2, 2), "end": duration, "text": "they sit down"}]}
        )  # fmt: skip
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in recs), encoding="utf-8")
    (root / "priors.jsonl").write_text("\n".join(json.dumps(r) for r in prior_rows), encoding="utf-8")
    (root / "card.yaml").write_text(
        f"name: offgrid\nformat: qvhighlights\nroot: {root}\nclip_len: {CLIP_LEN}\nmax_clips: {MAX_CLIPS}\n"
        "annotations: {train: train.jsonl, val: train.jsonl}\n"
        f"video_features: {{vis: {{dir: vis, key: features, dim: {DV}}}}}\n"
        f"text_features: {{dir: txt, key: last_hidden_state, dim: {DT}}}\n"
        "prior_dir: priors\n",
        encoding="utf-8",
    )
    invoke(
        "priors", "import", str(root / "priors.jsonl"), "-d", str(root / "card.yaml"), "--priors-run", "ext"
    )
    invoke("priors", "embed", "-d", str(root / "card.yaml"), "--priors-run", "ext")
    return root


def _train(world: Path, out: Path) -> dict:  # type: ignore[type-arg]
    invoke(
        "train", "-d", str(world / "card.yaml"), "--out", str(out), "--priors-run", "ext", "--no-config",
        "--set", "epochs=2", "--set", "batch_size=4", "--set", "eval_every=1",
        "--set", "model.hidden_dim=32", "--set", "model.num_queries=4",
    )  # fmt: skip
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_off_grid_world_trains_with_imported_priors_and_counts_what_it_fitted(
    world: Path, tmp_path: Path
) -> None:
    summary = _train(world, tmp_path / "run")
    data = summary["data"]["train"]
    assert data["videos"] == len(VIDEOS)
    assert data["videos_cut"] == 2  # f and g
    off = sorted(v for v, (d, r) in VIDEOS.items() if _length(d, r) != num_clips(d, CLIP_LEN))
    assert sorted(data["off_grid_ids"]) == off and data["features_off_grid"] == len(off)
    # Imported priors sit on the grid (cut at max_clips); the features a clip off it are fitted.
    fitted = sorted(
        v for v, (d, r) in VIDEOS.items() if min(_length(d, r), MAX_CLIPS) != min(num_clips(d, 1), MAX_CLIPS)
    )
    assert sorted(data["prior_fitted_ids"]) == fitted and data["prior_clips_fitted"] == len(fitted)
    assert data["videos_without_priors"] == 0
    assert summary["best_metrics"] is not None
    # loss.esta_edge_share auto: set from the measured edge error, reported, and saved as a number.
    share = edge_share_from_error(data["prior_edge_error"], data["prior_edge_matched"])
    assert data["esta_edge_share"] == share
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text(encoding="utf-8"))
    assert saved["loss"]["esta_edge_share"] == share and saved["train"]["loss"] == {}


def test_priors_on_another_clip_length_are_refused_naming_video_and_shard(
    world: Path, tmp_path: Path
) -> None:
    card = world / "card.yaml"
    wrong = tmp_path / "half.jsonl"  # priors imported with 2-s clips against 1-s features
    wrong.write_text((world / "priors.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    invoke("priors", "import", str(wrong), "-d", str(card), "--priors-run", "half", "--set", "clip_len=2.0")
    invoke("priors", "embed", "-d", str(card), "--priors-run", "half")
    res = CliRunner().invoke(
        main,
        [
            "train",
            "-d",
            str(card),
            "--out",
            str(tmp_path / "run"),
            "--priors-run",
            "half",
            "--no-config",
            "--set",
            "epochs=1",
        ],
    )
    assert res.exit_code != 0
    assert "videos have priors on another clip grid" in res.output
    assert "(priors 4, features 8, duration grid 8)" in res.output  # video a: 7.3 s
    assert "part-000of001-00000.parquet" in res.output
