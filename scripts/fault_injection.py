"""Fault injection for stage 1 and training (issue 15): SIGKILL at random times, two writers, bad inputs.

On small CPU worlds built under ``--work`` (a temp folder by default):

- stage 1: ``masra priors generate`` (a subprocess; the scripted engine of tests/test_prior_generate.py
  stands in for the MLLM, slowed a little so that kills land mid-run) is killed with SIGKILL at random
  times ``--kills`` times, rerun after each kill; at the end each run folder must hold every video
  exactly once, every shard must be readable and the manifest must say ``complete``;
- training: ``masra train`` on the toy world of tests/_train_world.py is killed ``--kills`` times and
  resumed with ``--resume`` each time; the last line of its metrics.jsonl must equal an uninterrupted
  run's, and ``best/`` and ``last/`` must load;
- two stage-1 writers on one folder at once: the second is refused, nothing is duplicated;
- bad inputs (a vid that is a path, a NaN feature file, a config value of the wrong type): the error
  names the file / key.

Prints a table and exits 1 if any invariant fails. ``make test-faults`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
sys.path[:0] = [str(TESTS), str(REPO)]

# A `masra` command whose MLLM is the tests' scripted engine (slowed: a sleep per generate call).
_STAGE1 = """
import sys, time
sys.path[:0] = [{tests!r}, {repo!r}]
from test_prior_generate import ScriptedEngine
import masra.prior_gen.engines as engines
from masra.pipelines.cli import main

class Slow(ScriptedEngine):
    def generate(self, requests, sampling):
        time.sleep({delay})
        return super().generate(requests, sampling)

engines.load_engine = lambda cfg: Slow()
main(sys.argv[1:], prog_name="masra")
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs for stage 1 and for training, each [20]")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill times [0]")
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a temp folder, removed)")
    p.add_argument("--delay", type=float, default=0.3, help="seconds per scripted engine call [0.3]")
    return p


class Row:
    """One line of the table (a plain class: the docs test loads this file without sys.modules)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.faults = 0
        self.recovered = 0
        self.lost = 0
        self.duplicated = 0
        self.resumes = "-"
        self.metrics_equal = "-"
        self.failures: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.failures and self.lost == 0 and self.duplicated == 0


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _masra() -> list[str]:
    return [sys.executable, "-m", "masra.pipelines.cli"]


def _run_killed(cmd: list[str], after: float, log: Path) -> bool:
    """Start ``cmd``; SIGKILL it after ``after`` s. True if it was still running when killed."""
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, env=_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            proc.wait(timeout=after)
            return False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=REPO, timeout=timeout)


# ---------------------------------------------------------------- stage 1


def _stage1_cmd(card: Path, run: Path, model: Path, delay: float) -> list[str]:
    code = _STAGE1.format(tests=str(TESTS), repo=str(REPO), delay=delay)
    args = ["priors", "generate", "--dataset", str(card), "--model", str(model)]
    args += ["--prompt-family", "qwen2_5_vl", "--backend", "transformers", "--batch-videos", "1"]
    return [sys.executable, "-c", code, *args, "--out", str(run)]


def _check_stage1(run: Path, expected: list[str], row: Row, what: str) -> bool:
    import pyarrow.parquet as pq

    from masra.priors.schema import PRIOR_SCHEMA
    from masra.priors.shards import read_shards

    good = True
    for shard in sorted(run.glob("*.parquet")):
        try:
            pq.read_table(shard)
        except Exception as e:
            row.failures.append(f"{what}: unreadable shard {shard}: {e}")
            good = False
    ids = read_shards(run, PRIOR_SCHEMA).column("video_id").to_pylist()
    lost = len(set(expected) - set(ids))
    dup = len(ids) - len(set(ids))
    row.lost += lost
    row.duplicated += dup
    manifests = sorted(run.glob("manifest-*.json"))
    complete = bool(manifests) and all(json.loads(m.read_text()).get("complete") for m in manifests)
    if not complete:
        row.failures.append(f"{what}: manifest not complete")
    return good and complete and lost == 0 and dup == 0


def stage1_kills(work: Path, kills: int, rng: random.Random, delay: float) -> Row:
    from test_prior_generate import BROKEN, GOOD, make_world

    row = Row("stage 1 SIGKILL")
    card = make_world(work / "s1world")
    model = work / "s1model"
    model.mkdir()
    expected = sorted({**GOOD, **BROKEN})
    log = work / "s1.log"
    t0 = time.monotonic()
    res = _run(_stage1_cmd(card, work / "s1base", model, delay))
    est = time.monotonic() - t0
    if res.returncode != 0:
        row.failures.append(f"uninterrupted stage 1 failed: {res.stderr[-2000:]}")
        return row
    _check_stage1(work / "s1base", expected, row, "uninterrupted run")
    rounds: list[tuple[Path, int]] = []
    run, in_round = work / "s1run-00", 0
    while row.faults < kills:
        if _run_killed(_stage1_cmd(card, run, model, delay), rng.uniform(0.2, est), log):
            row.faults += 1
            in_round += 1
        else:  # the run finished before the kill: this folder is done, start another
            rounds.append((run, in_round))
            run, in_round = work / f"s1run-{len(rounds):02d}", 0
    rounds.append((run, in_round))
    for folder, n in rounds:
        res = _run(_stage1_cmd(card, folder, model, delay))
        if res.returncode != 0:
            row.failures.append(f"rerun of {folder.name} failed: {res.stderr[-2000:]}")
            continue
        if _check_stage1(folder, expected, row, folder.name):
            row.recovered += n
    return row


def two_writers(work: Path, delay: float) -> Row:
    from test_prior_generate import BROKEN, GOOD, make_world

    row = Row("two stage-1 writers")
    card = make_world(work / "s2world")
    model = work / "s2model"
    model.mkdir()
    run = work / "s2run"
    cmd = _stage1_cmd(card, run, model, delay)
    first = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(run.glob("lock-*.json")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    second = _run(cmd)
    _, first_err = first.communicate(timeout=300)
    row.faults = 1
    if first.returncode != 0:
        row.failures.append(f"first writer failed: {first_err[-2000:]}")
    if second.returncode == 0 or "is locked by pid" not in second.stderr:
        row.failures.append(
            f"second writer was not refused (rc {second.returncode}): {second.stderr[-2000:]}"
        )
    if _check_stage1(run, sorted({**GOOD, **BROKEN}), row, "two writers") and not row.failures:
        row.recovered = 1
    return row


# ---------------------------------------------------------------- training


def _train_config(work: Path) -> tuple[Path, Path]:
    from _train_world import make_world, tiny_overrides

    card = make_world(work / "trworld", num_train=12, num_val=4)
    cfg = work / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_overrides(card, epochs=10, batch_size=4)))
    return card, cfg


def _train_cmd(card: Path, cfg: Path, run: Path, *flags: str) -> list[str]:
    return [*_masra(), "train", "--dataset", str(card), "--config", str(cfg), "--out", str(run), *flags]


def _last_metrics(run: Path) -> dict[str, Any]:
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    return {k: v for k, v in last.items() if "time" not in k and "elapsed" not in k}


def training_kills(work: Path, kills: int, rng: random.Random) -> Row:
    from masra.grounding.checkpoint import load_checkpoint

    row = Row("training SIGKILL")
    card, cfg = _train_config(work)
    t0 = time.monotonic()
    res = _run(_train_cmd(card, cfg, work / "trbase"))
    est = time.monotonic() - t0
    if res.returncode != 0:
        row.failures.append(f"uninterrupted training failed: {res.stderr[-2000:]}")
        return row
    want = _last_metrics(work / "trbase")
    log = work / "train.log"
    resumes, equal, rounds = 0, 0, 0
    run = work / "trrun-00"

    def finish(folder: Path) -> None:
        nonlocal equal, resumes
        done = (folder / "summary.json").is_file()
        if not done:
            flag = "--resume" if (folder / "last").exists() else "--overwrite"
            res = _run(_train_cmd(card, cfg, folder, flag))
            resumes += flag == "--resume"
            if res.returncode != 0:
                row.failures.append(f"{folder.name}: final {flag} failed: {res.stderr[-2000:]}")
                return
        try:
            got = _last_metrics(folder)
            for name in ("best", "last"):
                load_checkpoint(folder / name)
        except Exception as e:
            row.failures.append(f"{folder.name}: {e}")
            return
        if got == want:
            equal += 1
        else:
            row.failures.append(f"{folder.name}: last metrics differ: {got} != {want}")

    in_round = 0
    while row.faults < kills:
        started = (run / "history.jsonl").exists() or (run / "last").exists()
        flag = "--resume" if (run / "last").exists() else ("--overwrite" if started else "")
        cmd = _train_cmd(card, cfg, run, *([flag] if flag else []))
        resumes += flag == "--resume"
        if _run_killed(cmd, rng.uniform(0.2, est), log):
            row.faults += 1
            in_round += 1
        else:
            before = len(row.failures)
            finish(run)
            if len(row.failures) == before:
                row.recovered += in_round
            rounds += 1
            run, in_round = work / f"trrun-{rounds:02d}", 0
    before = len(row.failures)
    finish(run)
    if len(row.failures) == before:
        row.recovered += in_round
    rounds += 1
    row.resumes = str(resumes)
    row.metrics_equal = "yes" if equal == rounds and not row.failures else f"no ({equal}/{rounds})"
    return row


# ---------------------------------------------------------------- bad inputs


def bad_inputs(work: Path) -> Row:
    from _train_world import make_world

    row = Row("bad inputs")
    cases: list[tuple[str, list[str], list[str]]] = []
    # a vid that is a path
    card = make_world(work / "bad-vid", num_train=4, num_val=2)
    ann = card.parent / "annotations" / "train.jsonl"
    lines = ann.read_text().splitlines()
    first = json.loads(lines[1])
    first["vid"] = "../../etc/passwd"
    lines[1] = json.dumps(first)
    ann.write_text("\n".join(lines) + "\n")
    cases.append(
        (
            "vid is a path",
            [*_masra(), "data", "build-store", "-d", str(card), "-s", "train"],
            ["train.jsonl:2"],
        )
    )
    # a NaN feature file
    card = make_world(work / "bad-nan", num_train=4, num_val=2)
    feat = card.parent / "features" / "vis" / "train001.npz"
    arr = np.load(feat)["features"]
    arr[3, 2] = np.nan
    np.savez(feat, features=arr)
    cases.append(
        (
            "NaN feature file",
            [*_masra(), "data", "build-store", "-d", str(card), "-s", "train"],
            ["train001.npz"],
        )
    )
    # a config value of the wrong type
    card = make_world(work / "bad-cfg", num_train=4, num_val=2)
    bad = work / "bad-config.yaml"
    bad.write_text("priors_run: true\n")
    cmd = [
        *_masra(),
        "train",
        "--dataset",
        str(card),
        "--config",
        str(bad),
        "--out",
        str(work / "bad-cfg-run"),
    ]
    cases.append(("config wrong type", cmd, ["priors_run", str(bad)]))
    for name, cmd, needles in cases:
        row.faults += 1
        res = _run(cmd)
        text = res.stdout + res.stderr
        if res.returncode != 0 and all(n in text for n in needles):
            row.recovered += 1  # refused, naming the file / key
        else:
            row.failures.append(f"{name}: rc {res.returncode}, wanted {needles} in: {text[-1500:]}")
    return row


# ---------------------------------------------------------------- main


def print_table(rows: list[Row]) -> None:
    head = [
        "check",
        "faults injected",
        "runs recovered",
        "rows lost",
        "rows duplicated",
        "resumes",
        "metrics equal",
    ]
    body = [
        [r.name, str(r.faults), str(r.recovered), str(r.lost), str(r.duplicated), r.resumes, r.metrics_equal]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    print(fmt(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in body:
        print(fmt(cells))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rng = random.Random(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="masra-faults-"))
    if args.work and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rows = [
        stage1_kills(work, args.kills, rng, args.delay),
        training_kills(work, args.kills, rng),
        two_writers(work, args.delay),
        bad_inputs(work),
    ]
    print_table(rows)
    print(f"({time.monotonic() - t0:.0f} s, kills={args.kills}, seed={args.seed}, work={work})")
    failed = [f for r in rows for f in r.failures] + [
        f"{r.name}: {r.lost} rows lost, {r.duplicated} duplicated" for r in rows if r.lost or r.duplicated
    ]
    for f in failed:
        print(f"FAIL {f}", file=sys.stderr)
    if args.work is None and not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
