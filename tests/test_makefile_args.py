"""The Makefile passes ARGS (and SPLIT) to the masra command of each target, never to dependencies.

Read with `make -n` (nothing runs); the venv stamp is taken as up to date (`-o`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _dry(*args: str) -> list[str]:
    res = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", *args], cwd=REPO, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    return [" ".join(ln.split()) for ln in res.stdout.splitlines() if "masra" in ln]


def test_args_and_split_reach_the_target_command() -> None:
    [ev] = _dry("eval", "DATASET=qvhighlights", "SPLIT=test", "ARGS=--set root=/data/qvh")
    assert ev.endswith(
        "eval --checkpoint runs/qvhighlights/best --dataset qvhighlights --split test --set root=/data/qvh"
    )
    [ev] = _dry("eval", "DATASET=qvhighlights")
    assert ev.endswith("--split val")
    [tr] = _dry("train", "DATASET=qvhighlights", "ARGS=--set epochs=5", "TRAIN_ARGS=--overwrite")
    assert tr.endswith("train --dataset qvhighlights --out runs/qvhighlights --overwrite --set epochs=5")
    [ab] = _dry("ablate", "DATASET=qvhighlights", "ARGS=--set epochs=2")
    assert ab.endswith("--set epochs=2")
    gen, embed, report = _dry("priors", "DATASET=qvhighlights", "ARGS=--limit 3")
    assert (
        gen.endswith("priors generate --dataset qvhighlights --limit 3") and "--limit" not in embed + report
    )


def test_args_do_not_leak_into_dependency_builds(tmp_path: Path) -> None:
    """`make train ARGS=...` on a missing fixture builds it without the training options."""
    lines = _dry("train", "DATASET=fixture", f"FIXTURE_DIR={tmp_path}/fx", "ARGS=--set epochs=5")
    build = [ln for ln in lines if "masra fixture" in ln]
    assert build and all("epochs" not in ln for ln in build)
    assert lines[-1].endswith("train --dataset fixture --out runs/fixture --set epochs=5")


BENCH_TARGETS = (
    "bench-label-efficiency",
    "bench-converged",
    "bench-pseudo",
    "bench-parts",
    "bench-batch-size",
)


@pytest.mark.parametrize("target", BENCH_TARGETS)
def test_args_reach_the_study_tools(target: str, tmp_path: Path) -> None:
    """The studies' documented `ARGS="--candidate ..."` style options reach their python -m bench tool."""
    res = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", target, "ARGS=--probe-arg 7", f"OPENWORLD_DIR={tmp_path}/w"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    tools = [" ".join(ln.split()) for ln in res.stdout.splitlines() if " -m bench." in ln]
    assert tools and tools[-1].endswith("--probe-arg 7"), tools
