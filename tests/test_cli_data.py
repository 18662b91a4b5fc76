"""`masra data stats` and `masra data build-store` on tiny hand-made datasets, through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from masra.datasets.store import FeatureStore
from masra.pipelines.cli_data import data

CARD = """\
name: tiny
format: {fmt}
root: {root}
annotations: {{train: train.{ext}, val: val.{ext}}}
{extra}
clip_len: 2.0
max_clips: 12
video_features: {{a: {{dir: feats/a, dim: 3}}}}
text_features: {{dir: feats/text, dim: 4}}
"""

QVH_ROWS = [
    {"qid": 1, "query": "a", "duration": 20, "vid": "v1", "relevant_windows": [[2, 6]],
     "relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3], [2, 2, 2]]},
    {"qid": 2, "query": "b", "duration": 20, "vid": "v1", "relevant_windows": [[0, 4], [10, 20]],
     "relevant_clip_ids": [0], "saliency_scores": [[4, 4, 4]]},
    {"qid": 3, "query": "c", "duration": 30, "vid": "v2", "relevant_windows": [[5, 35]],
     "relevant_clip_ids": [3], "saliency_scores": [[0, 1, 0]]},
]  # fmt: skip


def _qvh_card(root: Path) -> Path:
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in QVH_ROWS))
    (root / "val.jsonl").write_text(json.dumps(QVH_ROWS[0]) + "\n")
    card = root / "tiny.yaml"
    card.write_text(CARD.format(fmt="qvhighlights", root=root, ext="jsonl", extra=""))
    return card


def _stats(*args: str) -> dict:
    result = CliRunner().invoke(data, ["stats", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_stats_on_tiny_qvhighlights(tmp_path: Path) -> None:
    out = _stats("--dataset", str(_qvh_card(tmp_path)), "--split", "train")
    assert (out["queries"], out["queries_kept"], out["videos"], out["windows"]) == (3, 3, 2, 4)
    assert out["split"] == "train" and out["dataset"] == "tiny"
    assert out["clipped"] == {"window end past the video duration": 1} and out["dropped"] == {}
    assert out["duration_s"] == {"min": 20.0, "mean": 25.0, "median": 25.0, "max": 30.0}
    assert out["window_length_s"] == {"min": 4.0, "mean": 10.75, "median": 7.0, "max": 25.0}
    assert out["windows_per_query"] == {"min": 1.0, "mean": 1.3333, "median": 1.0, "max": 2.0}
    assert out["clips_per_video"] == {"min": 10.0, "mean": 12.5, "median": 12.5, "max": 15.0}
    assert out["videos_over_max_clips"] == 1
    assert out["saliency"]["relevant_clips_per_query"]["max"] == 2.0


def test_stats_annotations_override_and_set(tmp_path: Path) -> None:
    card = _qvh_card(tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(QVH_ROWS[2]))
    out = _stats("-d", str(card), "-s", "val", "--annotations", str(other))
    assert (out["queries"], out["videos"], out["annotations"]) == (1, 1, str(other))
    out = _stats("-d", str(card), "-s", "val", "--set", "annotations.val=other.jsonl", "--set", "clip_len=1")
    assert out["clips_per_video"]["max"] == 30.0


def test_stats_charades_txt_reports_dropped_rows(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("v1 0.0 4.0##one.\nv1 5.0 5.0##two.\nv2 3.0 40.0##three.")
    (tmp_path / "durations.tsv").write_text("vid\tlength_s\nv1\t10\nv2\t30.5\n")
    card = tmp_path / "c.yaml"
    card.write_text(
        CARD.format(fmt="charades_txt", root=tmp_path, ext="txt", extra="durations: durations.tsv")
    )
    out = _stats("-d", str(card), "-s", "train")
    assert (out["queries"], out["queries_kept"], out["windows"]) == (3, 2, 2)
    assert out["dropped"] == {"start >= end": 1}
    assert out["clipped"] == {"window end past the video duration": 1}
    assert "dropped 1 (start >= end: 1)" in out["note"]
    assert out["window_length_s"]["max"] == 27.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "test"], "has no split 'test'"),
        (["--split", "train", "--set", "clip_len=-1"], "clip_len must be > 0"),
        (["--split", "train", "--set", "nokeyvalue"], "must look like key=value"),
    ],
)
def test_stats_errors_are_clear(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(data, ["stats", "-d", str(_qvh_card(tmp_path)), *args])
    assert result.exit_code == 1 and message in result.output, result.output


def test_stats_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    card = _qvh_card(tmp_path)
    (tmp_path / "train.jsonl").write_text(json.dumps(QVH_ROWS[0]) + "\n{oops\n")
    result = CliRunner().invoke(data, ["stats", "-d", str(card), "-s", "train"])
    assert result.exit_code == 1
    assert f"{tmp_path / 'train.jsonl'}:2: invalid JSON" in result.output


def test_build_store_cli(tmp_path: Path) -> None:
    card = _qvh_card(tmp_path)
    rng = np.random.default_rng(0)
    for vid in ("v1", "v2"):
        (tmp_path / "feats" / "a").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(tmp_path / "feats" / "a" / f"{vid}.npz", features=rng.normal(size=(10, 3)))
    (tmp_path / "feats" / "text").mkdir()
    for q in (1, 2, 3):
        np.savez_compressed(
            tmp_path / "feats" / "text" / f"qid{q}.npz",
            last_hidden_state=rng.normal(size=(3, 4)),
            pooler_output=rng.normal(size=4),
        )
    result = CliRunner().invoke(
        data, ["build-store", "-d", str(card), "-s", "train", "-s", "val", "--out", str(tmp_path / "st")]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == {
        "store": str(tmp_path / "st"), "videos": 2, "clips": 20, "queries": 3,
        "video_dim": 3, "text_dim": 4, "dtype": "float16",
    }  # fmt: skip
    assert FeatureStore.open(tmp_path / "st").qids == ["1", "2", "3"]

    (tmp_path / "feats" / "text" / "qid3.npz").unlink()
    result = CliRunner().invoke(
        data, ["build-store", "-d", str(card), "-s", "train", "--out", str(tmp_path / "s2")]
    )
    assert result.exit_code == 1 and "1 text feature files (of 3) missing" in result.output


def test_every_command_with_a_dataset_option_takes_dash_d_for_it() -> None:
    import click

    from masra.pipelines.cli import main as cli

    def walk(cmd: click.Command, path: str) -> list[tuple[str, click.Command]]:
        out = [(path, cmd)]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                out += walk(sub, f"{path} {name}")
        return out

    with_dataset = []
    for path, cmd in walk(cli, "masra"):
        for p in cmd.params:
            if isinstance(p, click.Option) and "--dataset" in p.opts:
                with_dataset.append(path)
                assert "-d" in p.opts, f"{path}: --dataset has no -d"
    assert {"masra train", "masra ablate", "masra eval", "masra data stats", "masra priors generate"} <= set(
        with_dataset
    )
