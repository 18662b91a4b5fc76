"""Training under SIGKILL: ``masra train`` on the fixture, killed at random and resumed."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from .common import Ctx, Row, jsonl, kill_time, masra, run, run_killed, tail, timed

# A short deterministic run: 8 epochs of 5 steps on the small fixture, evaluated every epoch.
SETTINGS = ["epochs=8", "eval_every=1", "batch_size=8", "deterministic=true"]


def train_cmd(ctx: Ctx, run_dir: Path, *extra: str) -> list[str]:
    """``masra train`` on the fixture (the shipped fixture config with :data:`SETTINGS`)."""
    sets = [a for s in [f"card.root={ctx.fixture}", *SETTINGS] for a in ("--set", s)]
    return masra("train", "--dataset", "fixture", *sets, "--out", str(run_dir), *extra)


def snapshot(run_dir: Path) -> dict[str, Any]:
    """What must match an uninterrupted run: every metrics and train-log line (times left out), the
    best/last pointers, and the bytes of the tensors of the checkpoints ``best`` and ``last`` name."""
    out: dict[str, Any] = {
        "metrics.jsonl": jsonl(run_dir / "metrics.jsonl"),
        "train_log.jsonl": jsonl(run_dir / "train_log.jsonl"),
    }
    for name in ("best", "last"):
        out[f"{name}.json"] = json.loads((run_dir / f"{name}.json").read_text())
        folder = (run_dir / name).resolve()
        out[name] = {p.name: p.read_bytes() for p in sorted(folder.glob("*.safetensors"))}
        if not out[name]:
            raise ValueError(f"{run_dir / name} holds no weights")
    return out


def _differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    diff = []
    for key, value in want.items():
        if got.get(key) != value:
            if key.endswith(".jsonl"):
                n, m = len(got.get(key, [])), len(value)
                diff.append(f"{key} differs ({n} lines, uninterrupted {m})")
            else:
                diff.append(f"{key} differs")
    return diff


def _flag(folder: Path) -> str | None:
    """How a user goes on after a kill: nothing for a new folder, ``--resume`` once a checkpoint exists,
    else ``--overwrite`` (killed before its first checkpoint)."""
    if not folder.exists() or not any(folder.iterdir()):
        return None
    if any((folder / "checkpoints").glob("step-*")) or (folder / "last").exists():
        return "--resume"
    return "--overwrite"


def baseline(ctx: Ctx) -> tuple[dict[str, Any], float, float]:
    """An uninterrupted run: its snapshot, wall time and the time of its first checkpoint; its best
    checkpoint must evaluate."""
    base = ctx.work / "train-base"
    rc, secs, first = timed(train_cmd(ctx, base), ctx.log, base / "checkpoints", "step-*")
    if rc != 0:
        raise RuntimeError(f"uninterrupted training failed (rc {rc}, see {ctx.log})")
    ev = run(masra("eval", "--checkpoint", str(base / "best"), *ctx.card(), "--split", "val"), ctx.log)
    if ev.returncode != 0:
        raise RuntimeError(f"masra eval of the uninterrupted run's best/ failed: {tail(ev)}")
    return snapshot(base), secs, first


def training_kills(
    ctx: Ctx, kills: int, rng: random.Random, want: dict[str, Any], est: float, first: float
) -> Row:
    """SIGKILL ``masra train`` at random times (:func:`faults.common.kill_time`), ``kills`` times.

    After each kill the run is started again as a user would (:func:`_flag`); a run that ends by
    itself closes its folder, whose files must then equal the uninterrupted run's (:func:`snapshot`).
    """
    row = Row("training SIGKILL")
    t0 = time.monotonic()
    resumes = rounds = equal = 0
    folder, in_round = ctx.work / "train-run-00", 0

    def finish(folder: Path, n: int) -> None:
        nonlocal resumes, equal
        if not (folder / "summary.json").is_file():  # killed last: go on once more, unkilled
            flag = _flag(folder)
            resumes += flag == "--resume"
            res = run(train_cmd(ctx, folder, *([flag] if flag else [])), ctx.log)
            if res.returncode != 0:
                row.failures.append(f"{folder.name}: the final {flag} failed: {tail(res)}")
                return
        try:
            diff = _differences(snapshot(folder), want)
        except (OSError, ValueError) as e:
            diff = [f"unreadable: {e}"]
        if diff:
            row.failures.append(f"{folder.name}: {'; '.join(diff)}")
        else:
            equal += 1
            row.recovered += n

    while row.faults < kills:
        flag = _flag(folder)
        resumes += flag == "--resume"
        steps = set((folder / "checkpoints").glob("step-*"))
        cmd = train_cmd(ctx, folder, *([flag] if flag else []))
        killed, rc = run_killed(cmd, kill_time(rng, first, est), ctx.log)
        if killed:
            row.faults += 1
            row.after_write += bool(set((folder / "checkpoints").glob("step-*")) - steps)
            in_round += 1
            continue
        if rc != 0:
            row.failures.append(
                f"{folder.name}: `masra train {flag or ''}` after a kill exited {rc} (see the log)"
            )
        finish(folder, in_round)
        rounds += 1
        folder, in_round = ctx.work / f"train-run-{rounds:02d}", 0
    if in_round:
        finish(folder, in_round)
        rounds += 1
    row.resumes = str(resumes)
    if rounds:
        row.metrics_equal = "yes" if equal == rounds else f"no ({equal}/{rounds} folders)"
    row.seconds = time.monotonic() - t0
    return row
