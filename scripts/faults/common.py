"""The work context, subprocess helpers and result rows shared by the fault-injection checks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Keys of metrics.jsonl / train_log.jsonl lines that hold wall-clock times (differ run to run).
TIME_KEYS = ("time", "elapsed")


@dataclass
class Row:
    """One line of the summary table: what was injected and what came out of it."""

    name: str
    faults: int = 0
    recovered: int = 0
    lost: int = 0
    duplicated: int = 0
    after_write: int = 0  # kills of a run that had written a shard / checkpoint before it was killed
    resumes: str = "-"
    metrics_equal: str = "-"
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and self.lost == 0 and self.duplicated == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "faults_injected": self.faults,
            "runs_recovered": self.recovered,
            "rows_lost": self.lost,
            "rows_duplicated": self.duplicated,
            "kills_after_a_write": self.after_write,
            "resumes": self.resumes,
            "metrics_equal": self.metrics_equal,
            "seconds": round(self.seconds, 1),
            "failures": self.failures,
        }


@dataclass
class Ctx:
    """Where the suite works: the fixture, the tiny MLLM, and a log of every command's output."""

    work: Path
    fixture: Path
    model: Path
    log: Path

    def card(self, root: Path | None = None) -> list[str]:
        """``--dataset fixture --set root=...``: the shipped fixture card pointed at our copy."""
        return ["--dataset", "fixture", "--set", f"root={root or self.fixture}"]


def env() -> dict[str, str]:
    """The environment of every command: offline, unbuffered, no tokenizer threads."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }


def masra(*args: str) -> list[str]:
    """The ``masra`` command line of this interpreter's environment."""
    return [sys.executable, "-m", "masra.pipelines.cli", *args]


def run(cmd: list[str], log: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to the end in the repository; its output is returned and appended to ``log``."""
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, cwd=REPO, timeout=timeout)
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n[rc {res.returncode}]\n{res.stdout}{res.stderr}")
    return res


def run_killed(cmd: list[str], after: float, log: Path) -> tuple[bool, int]:
    """Start ``cmd``; SIGKILL it after ``after`` seconds.

    Returns (killed, returncode): killed is False when it exited by itself before the kill.
    """
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}   # SIGKILL after {after:.2f} s\n")
        out.flush()
        proc = subprocess.Popen(cmd, env=env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            rc = proc.wait(timeout=after)
            return False, rc
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            out.write("[killed]\n")
            return True, -signal.SIGKILL


def timed(cmd: list[str], log: Path, folder: Path, pattern: str) -> tuple[int, float, float]:
    """Run ``cmd`` to the end (output to ``log``), watching ``folder`` for a file matching ``pattern``.

    Returns (returncode, wall seconds, seconds until the first match appeared: the start of the
    run's writing phase; the wall time if none did).
    """
    t0, first = time.monotonic(), None
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, env=env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        while proc.poll() is None:
            if first is None and any(folder.glob(pattern)):
                first = time.monotonic() - t0
            time.sleep(0.05)
        out.write(f"[rc {proc.returncode}]\n")
    wall = time.monotonic() - t0
    return proc.returncode, wall, wall if first is None else first


def kill_time(rng: random.Random, first: float, wall: float) -> float:
    """When to kill: uniform over the whole run (0.2 s to an uninterrupted run's ``wall``) for a
    quarter of the kills, else uniform over its writing phase (from a second before the ``first``
    write on), so that most kills land while files are being written rather than in start-up."""
    start = 0.2 if rng.random() < 0.25 else max(0.2, first - 1.0)
    return rng.uniform(start, max(start, wall))


def tail(res: subprocess.CompletedProcess[str], n: int = 1500) -> str:
    return (res.stdout + res.stderr)[-n:]


def jsonl(path: Path) -> list[dict[str, Any]]:
    """The lines of a JSON-lines file, wall-clock keys left out."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if not any(t in k for t in TIME_KEYS)} for r in rows]


def build_fixture(out: Path, train_videos: int, val_videos: int, log: Path) -> None:
    """``masra fixture --out OUT --seed 0`` with the given numbers of videos."""
    cmd = masra("fixture", "--out", str(out), "--seed", "0", "--train-videos", str(train_videos))
    res = run([*cmd, "--val-videos", str(val_videos)], log)
    if res.returncode != 0:
        raise RuntimeError(f"masra fixture failed: {tail(res)}")


def ensure_tiny_model(models: Path, log: Path) -> Path:
    """The tiny random Qwen2.5-VL under ``models`` (built by scripts/build_tiny_models.py if missing)."""
    model = models / "qwen2_5_vl"
    if not (model / "config.json").is_file():
        res = run([sys.executable, str(REPO / "scripts" / "build_tiny_models.py"), "--out", str(models)], log)
        if res.returncode != 0:
            raise RuntimeError(f"build_tiny_models.py failed: {tail(res)}")
    return model.resolve()
