"""Tiny end-to-end runs through the real CLI: train, errors, ablate, and a 2-process accelerate launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _train_world import TINY_MODEL, make_world
from click.testing import CliRunner

from masra.pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]


def _sets(epochs: int = 2, **extra: object) -> list[str]:
    """``--no-config`` (the toy card has no config file) and the tiny run's ``--set`` overrides."""
    values: dict[str, object] = {
        "epochs": epochs,
        "batch_size": 8,
        "eval_batch_size": 16,
        "eval_every": 1,
        "log_every": 2,
        "priors_encoder": "toy",
        "mixed_precision": "no",
        "best_metric": "MR-full-R1@0.5",
        **{f"model.{k}": v for k, v in TINY_MODEL.items()},
        **extra,
    }
    out = ["--no-config"]
    for k, v in values.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    return out


def test_cli_train_writes_best_checkpoint_and_logs(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world")
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--dataset", str(card), "--out", str(run), *_sets()])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "position-only baseline" in res.output
    assert (run / "best" / "model.safetensors").is_file() and (run / "best" / "config.json").is_file()
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP"} <= set(metrics[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["priors"]["source"] == "reference"
    base = summary["position_baseline"]
    assert set(base["candidates"]) == {"common_seconds", "common_relative", "best_relative"}
    assert base["best_brief"]["MR-full-R1@0.5"] == max(
        c["MR-full-R1@0.5"] for c in base["candidates"].values()
    )
    # --resume continues the same run to more epochs.
    res = CliRunner().invoke(
        main, ["train", "--dataset", str(card), "--out", str(run), "--resume", *_sets(epochs=3)]
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_cli_train_missing_priors_is_a_clear_error(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=10, prior_videos="train-half")
    res = CliRunner().invoke(main, ["train", "--dataset", str(card), "--out", str(tmp_path / "r"), *_sets(1)])
    assert res.exit_code == 1
    assert "5 of 10 videos have no priors (e.g. train005" in res.output
    res = CliRunner().invoke(
        main,
        ["train", "--dataset", str(card), "--out", str(tmp_path / "r"), *_sets(1, allow_partial_priors=True)],
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["data"]["train"]["videos_without_priors"] == 5


def test_cli_bad_override_is_a_usage_error(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=4, num_val=2)
    res = CliRunner().invoke(main, ["train", "--dataset", str(card), "--no-config", "--set", "epochs=0"])
    assert res.exit_code == 2 and "epochs must be an integer >= 1" in res.output


@pytest.mark.slow
def test_cli_ablate_prints_a_table(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=12, num_val=4)
    out = tmp_path / "abl"
    res = CliRunner().invoke(main, ["ablate", "--dataset", str(card), "--out", str(out), *_sets(1)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    names = ["baseline", "masra", *(f"masra-no-{p}" for p in ("esta", "lrca", "sge", "sora", "dai"))]
    for name in names:
        assert f"| {name} |" in res.output
        assert (out / name / "best" / "config.json").is_file()
    cfg = json.loads((out / "masra-no-sora" / "best" / "config.json").read_text())
    assert cfg["model"]["use_sora"] is False and cfg["model"]["use_dai"] is True
    assert json.loads((out / "baseline" / "best" / "config.json").read_text())["priors"] is None


@pytest.mark.timeout(300)
def test_two_process_accelerate_launch(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=16, num_val=6)
    run = tmp_path / "run"
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert launcher is not None
    cmd = [
        launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "masra.pipelines.cli",
        "train", "--dataset", str(card), "--out", str(run), *_sets(2),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]  # written once, by the main process
    cfg = json.loads((run / "best" / "config.json").read_text())
    state = json.loads((run / "best" / "trainer_state.json").read_text())
    assert cfg["dataset"] == "toy" and state["num_processes"] == 2
    assert (run / "best" / "rng_0.safetensors").is_file() and (run / "best" / "rng_1.safetensors").is_file()
    # Every query of val was predicted exactly once after gathering from both processes.
    preds = [json.loads(x) for x in (run / "best" / "predictions_val.jsonl").read_text().splitlines()]
    assert sorted(p["qid"] for p in preds) == list(range(16, 22))
