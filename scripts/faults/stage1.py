"""Stage 1 under SIGKILL and concurrent writers: ``masra priors generate`` with the tiny MLLM."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

from .common import Ctx, Row, env, kill_time, masra, run, run_killed, tail, timed

# Small generation budgets: the tiny model's weights are random and it writes to the token limit.
BUDGET = ["--set", "priors.event_max_tokens=8", "--set", "priors.caption_max_tokens=2", "--max-frames", "4"]
# The split stage 1 runs on: the fixture's smaller one (each video costs seconds with the tiny model).
SPLIT = "val"
# A row's columns that may differ between two runs of the same video (when it was written).
VOLATILE = ("created_at",)


def _strip(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its :data:`VOLATILE` columns."""
    return {k: v for k, v in row.items() if k not in VOLATILE}


def stage1_cmd(ctx: Ctx, run_dir: Path, *extra: str) -> list[str]:
    """``masra priors generate`` on the fixture's val split, one video per batch and shard."""
    args = ["priors", "generate", *ctx.card(), *BUDGET, "--split", SPLIT, "--model", str(ctx.model)]
    args += ["--backend", "transformers", "--batch-videos", "1", "--decode-workers", "1"]
    return masra(*args, "--out", str(run_dir), *extra)


def expected_videos(ctx: Ctx) -> list[str]:
    """The video ids of :data:`SPLIT`, read from the fixture's annotation file."""
    path = ctx.fixture / "annotations" / f"fixture_{SPLIT}.jsonl"
    return sorted({json.loads(line)["vid"] for line in path.read_text().splitlines() if line.strip()})


def read_rows(run_dir: Path, row: Row, what: str) -> list[dict[str, Any]] | None:
    """Every row of the run's shards (pyarrow); None, with a failure noted, if a shard does not read."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for shard in sorted(run_dir.glob("part-*.parquet")):
        try:
            rows += pq.read_table(shard).to_pylist()
        except Exception as e:
            row.failures.append(f"{what}: unreadable shard {shard}: {e}")
            return None
    return rows


def check_run(run_dir: Path, want: dict[str, dict[str, Any]], row: Row, what: str) -> bool:
    """The invariants of a finished stage-1 run folder; adds lost / duplicated rows to ``row``.

    Every video exactly once; rows equal to an uninterrupted run's (but for the write time); the
    manifest complete and counting every video; no leftover temporary file or lock; shards of the
    umask's mode.
    """
    rows = read_rows(run_dir, row, what)
    if rows is None:
        return False
    ids = [r["video_id"] for r in rows]
    lost, dup = len(set(want) - set(ids)), len(ids) - len(set(ids))
    row.lost += lost
    row.duplicated += dup
    problems = [f"{lost} videos lost"] * bool(lost) + [f"{dup} rows duplicated"] * bool(dup)
    differ = sorted(r["video_id"] for r in rows if r["video_id"] in want and _strip(r) != want[r["video_id"]])
    if differ:
        problems.append(f"rows differ from the uninterrupted run's for {differ}")
    manifest = run_dir / "manifest-000of001.json"
    m = json.loads(manifest.read_text()) if manifest.is_file() else {}
    rows_total = (m.get("run_totals") or {}).get("rows")
    if not (m.get("complete") and m.get("videos_done") == len(want) == m.get("videos_total") == rows_total):
        keys = ("complete", "videos_done", "videos_total")
        problems.append(f"manifest not complete and true: { {k: m.get(k) for k in keys} }, rows {rows_total}")
    leftovers = sorted(
        p.name for p in run_dir.iterdir() if p.name.endswith(".tmp") or p.name.startswith("lock-")
    )
    if leftovers:
        problems.append(f"left behind: {leftovers}")
    umask = os.umask(0)
    os.umask(umask)
    modes = {oct(p.stat().st_mode & 0o777) for p in run_dir.glob("part-*.parquet")}
    if modes - {oct(0o666 & ~umask)}:
        problems.append(f"shard modes {sorted(modes)}, wanted {oct(0o666 & ~umask)}")
    row.failures += [f"{what}: {p}" for p in problems]
    return not problems


def baseline(ctx: Ctx) -> tuple[dict[str, dict[str, Any]], float, float]:
    """An uninterrupted run: its rows by video (write time left out), its wall time and the time of
    its first shard."""
    row = Row("uninterrupted stage 1")
    base = ctx.work / "s1-base"
    rc, secs, first = timed(stage1_cmd(ctx, base), ctx.log, base, "part-*.parquet")
    rows = read_rows(base, row, "uninterrupted") if rc == 0 else None
    if rows is None:
        raise RuntimeError(f"uninterrupted stage 1 failed (rc {rc}, see {ctx.log}) {row.failures}")
    want = {r["video_id"]: _strip(r) for r in rows}
    if sorted(want) != expected_videos(ctx) or len(rows) != len(want):
        raise RuntimeError(f"uninterrupted stage 1 wrote {sorted(r['video_id'] for r in rows)}")
    return want, secs, first


def stage1_kills(
    ctx: Ctx, kills: int, rng: random.Random, want: dict[str, dict[str, Any]], est: float, first: float
) -> Row:
    """SIGKILL stage 1 at random times (:func:`faults.common.kill_time`), ``kills`` times.

    After each kill the same command is run again on the same folder (it may be killed again); when a
    run finishes before its kill, the folder is checked and the next kills go to a fresh folder. The
    first finished folder gets one more (no-op) rerun, whose manifest must stay true.
    """
    row = Row("stage 1 SIGKILL")
    t0 = time.monotonic()
    folder, in_round, rounds = ctx.work / "s1-run-00", 0, 0

    def finish(folder: Path, n: int, rerun: bool) -> None:
        if rerun:  # the run after the last kill, or a no-op rerun of a finished folder
            res = run(stage1_cmd(ctx, folder), ctx.log)
            if res.returncode != 0:
                row.failures.append(f"rerun of {folder.name} failed: {tail(res)}")
                return
        if check_run(folder, want, row, folder.name):
            row.recovered += n

    while row.faults < kills:
        shards = len(list(folder.glob("part-*.parquet")))
        killed, rc = run_killed(stage1_cmd(ctx, folder), kill_time(rng, first, est), ctx.log)
        if killed:
            row.faults += 1
            row.after_write += len(list(folder.glob("part-*.parquet"))) > shards
            in_round += 1
            continue
        if rc != 0:
            row.failures.append(f"{folder.name}: a rerun after a kill exited {rc} (see the log)")
        finish(folder, in_round, rerun=rounds == 0)
        rounds += 1
        folder, in_round = ctx.work / f"s1-run-{rounds:02d}", 0
    if in_round:
        finish(folder, in_round, rerun=True)
    row.seconds = time.monotonic() - t0
    return row


def _wait_for_lock(run_dir: Path, proc: subprocess.Popen[str], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if list(run_dir.glob("lock-*.json")):
            return True
        time.sleep(0.05)
    return False


def two_writers(ctx: Ctx, want: dict[str, dict[str, Any]]) -> Row:
    """Two ``priors generate`` on one folder and part: the second must be refused naming the holder."""
    row = Row("two stage-1 writers, one part")
    t0 = time.monotonic()
    folder = ctx.work / "s1-two-writers"
    cmd = stage1_cmd(ctx, folder)
    first = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    row.faults = 1
    if not _wait_for_lock(folder, first):
        row.failures.append("the first writer wrote no lock file")
    second = run(cmd, ctx.log)
    first_out = first.communicate(timeout=600)[0]
    if first.returncode != 0:
        row.failures.append(f"first writer failed: {first_out[-1500:]}")
    if second.returncode == 0 or f"is locked by pid {first.pid}" not in second.stdout + second.stderr:
        row.failures.append(
            f"second writer not refused naming pid {first.pid} (rc {second.returncode}): {tail(second)}"
        )
    if check_run(folder, want, row, folder.name) and not row.failures:
        row.recovered = 1
    row.seconds = time.monotonic() - t0
    return row


def two_parts(ctx: Ctx, want: dict[str, dict[str, Any]]) -> Row:
    """``--shard 0/2`` and ``--shard 1/2`` at once on one folder: both finish, each video once."""
    row = Row("two stage-1 writers, two parts")
    t0 = time.monotonic()
    folder = ctx.work / "s1-two-parts"
    procs = [
        subprocess.Popen(
            stage1_cmd(ctx, folder, "--shard", f"{i}/2"),
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    row.faults = 1
    for i, (p, out) in enumerate(zip(procs, outs, strict=True)):
        if p.returncode != 0:
            row.failures.append(f"part {i}/2 failed: {out[-1500:]}")
    rows = read_rows(folder, row, folder.name) or []
    ids = [r["video_id"] for r in rows]
    row.lost = len(set(want) - set(ids))
    row.duplicated = len(ids) - len(set(ids))
    differ = sorted(r["video_id"] for r in rows if _strip(r) != want.get(r["video_id"]))
    if differ:
        row.failures.append(f"rows differ from the uninterrupted run's for {differ}")
    for tag in ("000of002", "001of002"):
        path = folder / f"manifest-{tag}.json"
        if not (path.is_file() and json.loads(path.read_text()).get("complete")):
            row.failures.append(f"{path.name} missing or not complete")
    if not row.failures and row.ok:
        row.recovered = 1
    row.seconds = time.monotonic() - t0
    return row
