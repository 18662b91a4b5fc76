"""The whole pipeline through the installed `masra` command, as a user runs it.

fixture -> priors generate (tiny random Qwen2.5-VL, transformers backend) -> priors embed ->
priors report -> train (reference priors, a few epochs) -> eval of the best checkpoint.
Each step is a subprocess of the real console script on a small fixture world. The tiny MLLM's
output is noise, so stage 1 is checked for its contract (one row per video, statuses, provenance,
embeddings), and stage 2 trains on the fixture's reference priors, as `make demo` does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
MASRA = shutil.which("masra", path=str(Path(sys.executable).parent)) or "masra"


def run(*args: str, cwd: Path = REPO) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([*args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    run(
        MASRA,
        "fixture",
        "--out",
        str(root / "fixture"),
        "--seed",
        "3",
        "--train-videos",
        "8",
        "--val-videos",
        "4",
    )
    run(
        sys.executable,
        str(REPO / "scripts" / "build_tiny_models.py"),
        "--out",
        str(root / "tiny"),
        "--models",
        "qwen2_5_vl",
    )
    return root


def test_fixture_priors_train_eval_through_the_cli(world: Path) -> None:
    card = ["--dataset", "fixture", "--set", f"root={world / 'fixture'}"]
    fixture = json.loads((world / "fixture" / "fixture.json").read_text())
    assert fixture["status"] == "complete"

    # Stage 1 with the tiny random model on 2 videos.
    model = str(world / "tiny" / "qwen2_5_vl")
    out = run(MASRA, "priors", "generate", *card, "--model", model, "--split", "train", "--limit", "2")
    run_dirs = [p for p in (world / "fixture" / "priors").iterdir() if p.name != "reference"]
    assert len(run_dirs) == 1, out
    rows = pq.read_table(sorted(run_dirs[0].glob("*.parquet"))).to_pylist()
    assert len(rows) == 2
    for row in rows:
        assert row["status"] in ("ok", "partial", "failed")
        assert row["source"] == "mllm" and row["backend"] == "transformers"
        assert row["status"] == "ok" or row["error"], "a non-ok row must say why"
    run(MASRA, "priors", "embed", *card, "--model", model)
    emb = pq.read_table(run_dirs[0] / "embeddings" / "minilm").to_pylist()
    assert sorted(r["video_id"] for r in emb) == sorted(r["video_id"] for r in rows)
    run(MASRA, "priors", "report", *card, "--model", model)
    assert (run_dirs[0] / "report.json").is_file()

    # Stage 2 on the reference priors, then evaluation of the best checkpoint.
    run_dir = world / "run"
    train_out = run(
        MASRA, "train", "--dataset", "fixture", "--set", f"card.root={world / 'fixture'}",
        "--set", "epochs=2", "--set", "eval_every=1", "--out", str(run_dir),
    )  # fmt: skip
    assert "reference" in train_out, "training must say which priors it trained with"
    best = run_dir / "best"
    assert (best / "model.safetensors").is_file() and (best / "config.json").is_file()

    eval_dir = world / "eval"
    run(MASRA, "eval", "--checkpoint", str(best), *card, "--split", "val", "--out", str(eval_dir))
    metrics_files = list(eval_dir.glob("metrics_*.json"))
    assert len(metrics_files) == 1
    brief = json.loads(metrics_files[0].read_text())["brief"]
    for key in ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "HL-min-VeryGood-mAP"):
        assert 0.0 <= brief[key] <= 100.0
    preds = [json.loads(line) for line in next(eval_dir.glob("predictions_*.jsonl")).read_text().splitlines()]
    gt = [
        json.loads(line)
        for line in (world / "fixture" / "annotations" / "fixture_val.jsonl").read_text().splitlines()
    ]
    assert sorted(p["qid"] for p in preds) == sorted(g["qid"] for g in gt)
    for p in preds:
        scores = [w[2] for w in p["pred_relevant_windows"]]
        assert scores == sorted(scores, reverse=True)
        assert all(
            0.0 <= w[0] < w[1] <= next(g["duration"] for g in gt if g["qid"] == p["qid"])
            for w in p["pred_relevant_windows"]
        )
