"""A small fixture world (`masra fixture`) and a tiny checkpoint trained on it, for raw-video tests."""

from __future__ import annotations

from pathlib import Path

from _train_world import TINY_MODEL
from click.testing import CliRunner

from masra.grounding.config import load_train_config
from masra.grounding.train.recipe import run_training
from masra.pipelines.cli import main


def build_fixture_checkpoint(base: Path, *, train_videos: int = 6, val_videos: int = 2) -> tuple[Path, Path]:
    """(fixture root, best checkpoint): `masra fixture --seed 0` and a 2-epoch tiny run on it (~10 s)."""
    root = base / "fx"
    args = ["fixture", "--out", str(root), "--seed", "0"]
    args += ["--train-videos", str(train_videos), "--val-videos", str(val_videos)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    overrides = {
        "card.root": str(root),
        "epochs": 2,
        "batch_size": 8,
        "eval_batch_size": 64,
        "eval_every": 1,
        "log_every": 5,
        "mixed_precision": "no",
        "deterministic": True,
        "cpu_threads": 1,
        "model": dict(TINY_MODEL),
    }
    run_training(load_train_config("fixture", None, overrides), base / "run")
    return root, base / "run" / "best"
