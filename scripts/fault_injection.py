"""Fault injection for stage 1 and training (issue 15): SIGKILLs, two writers, every bad input.

On the shapes fixture (``masra fixture --seed 0`` with ``--train-videos``/``--val-videos`` videos,
built in the work folder), with stage 1's MLLM the tiny random Qwen2.5-VL of
``scripts/build_tiny_models.py`` (transformers engine; built under ``--models`` when missing):

- stage 1: ``masra priors generate --dataset fixture`` on the val split is killed with SIGKILL
  at random times ``--kills`` times and rerun after each kill; each run folder must then hold every
  video exactly once, with rows equal to an uninterrupted run's, readable shards, a complete manifest,
  no leftover temporary file or lock;
- training: ``masra train --dataset fixture`` (8 epochs, deterministic CPU) is killed ``--kills``
  times and resumed with ``--resume``; every metrics and train-log line, the best/last pointers and
  the checkpoints' tensors must equal an uninterrupted run's;
- two stage-1 writers on one folder and part (the second refused naming the holder), and two parts
  at once (both finish, each video once);
- each bad input of the issue's holes fed to the command that reads it: refused naming the file
  (or warned, with its count, where the issue asks for a warning).

Prints a summary table and the bad-input table, writes them as JSON beside ``--docs`` (a RUNLOG
file, which gets a dated section) and exits 1 if any check fails. ``make test-faults`` runs it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PARTS = ("stage1", "training", "writers", "inputs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs for stage 1 and for training, each [20]")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill times [0]")
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="work folder, emptied first (default: a temp folder, removed when all passes)",
    )
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="checks to run [all]")
    p.add_argument(
        "--cases",
        nargs="+",
        default=None,
        metavar="TEXT",
        help="only the bad inputs whose name contains TEXT",
    )
    p.add_argument("--jobs", type=int, default=2, help="bad inputs fed at a time [2]")
    p.add_argument("--train-videos", type=int, default=8, help="fixture train videos [8]")
    p.add_argument("--val-videos", type=int, default=4, help="fixture val videos (stage 1 runs on them) [4]")
    p.add_argument(
        "--models",
        type=Path,
        default=REPO / "data" / "generated" / "tiny_models",
        help="tiny model folder [data/generated/tiny_models]",
    )
    p.add_argument(
        "--docs",
        type=Path,
        default=REPO / "bench" / "results" / "RUNLOG.md",
        help="run log to append to; the JSON goes beside it [bench/results/RUNLOG.md]",
    )
    p.add_argument("--no-docs", action="store_true", help="write no JSON and no run-log section")
    p.add_argument("--json", type=Path, default=None, help="also write the result JSON to this file")
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(REPO / "scripts"))
    from faults import inputs, report, stage1, training
    from faults.common import Ctx, Row, build_fixture, ensure_tiny_model

    t0 = time.monotonic()
    rng = random.Random(args.seed)
    work = (args.work or Path(tempfile.mkdtemp(prefix="masra-faults-"))).resolve()
    if args.work and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    print(f"work folder {work}; every command's output goes to {log}", flush=True)
    model = ensure_tiny_model(args.models.resolve(), log)
    build_fixture(work / "fixture", args.train_videos, args.val_videos, log)
    ctx = Ctx(work=work, fixture=work / "fixture", model=model, log=log)
    rows: list[Row] = []
    outcomes: list[inputs.Outcome] = []
    want: dict[str, dict[str, Any]] = {}
    snap: dict[str, Any] = {}
    s1_secs = s1_first = tr_secs = tr_first = 0.0
    if {"stage1", "writers", "inputs"} & set(args.only):
        want, s1_secs, s1_first = stage1.baseline(ctx)
        print(
            f"uninterrupted stage 1: {len(want)} videos in {s1_secs:.0f} s, first shard at {s1_first:.0f} s",
            flush=True,
        )
    if {"training", "inputs"} & set(args.only):
        snap, tr_secs, tr_first = training.baseline(ctx)
        print(
            f"uninterrupted training: {len(snap['metrics.jsonl'])} evaluations in {tr_secs:.0f} s, "
            f"first checkpoint at {tr_first:.0f} s",
            flush=True,
        )
    steps = [
        ("stage1", lambda: [stage1.stage1_kills(ctx, args.kills, rng, want, s1_secs, s1_first)]),
        ("training", lambda: [training.training_kills(ctx, args.kills, rng, snap, tr_secs, tr_first)]),
        ("writers", lambda: [stage1.two_writers(ctx, want), stage1.two_parts(ctx, want)]),
    ]
    for part, step in steps:
        if part in args.only:
            rows += step()
            print(f"{rows[-1].name}: {rows[-1].seconds:.0f} s", flush=True)
    if "inputs" in args.only:
        row, outcomes = inputs.bad_inputs(ctx, args.cases, args.jobs)
        rows.append(row)
    wall = time.monotonic() - t0
    print("\n".join(["", *report.summary_table(rows), ""]))
    if outcomes:
        print("\n".join([*report.inputs_table(outcomes), ""]))
    print(f"({wall:.0f} s, kills={args.kills}, seed={args.seed}, work={work})")
    failed = [f for r in rows for f in r.failures] + [
        f"{r.name}: {r.lost} rows lost, {r.duplicated} duplicated" for r in rows if r.lost or r.duplicated
    ]
    for f in failed:
        print(f"FAIL {f}", file=sys.stderr)
    res = report.result(
        rows, outcomes, {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, wall
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if not args.no_docs:
        print(f"wrote {report.save(res, rows, outcomes, args.docs)} and a section of {args.docs}")
    if args.work is None and not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
