"""The suite's tables (console and Markdown), its JSON result and its section of bench/results/RUNLOG.md."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import REPO, Row
from .inputs import Outcome

HEAD = [
    "check",
    "faults injected",
    "kills after a write",
    "runs recovered",
    "rows lost",
    "rows duplicated",
    "resumes",
    "metrics equal",
]


def _table(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, body)]


def summary_table(rows: list[Row]) -> list[str]:
    """faults injected / runs recovered / rows lost / rows duplicated per check (bad inputs: fed / handled)."""
    body = [
        [
            r.name,
            str(r.faults),
            str(r.after_write) if "SIGKILL" in r.name else "-",
            str(r.recovered),
            str(r.lost),
            str(r.duplicated),
            r.resumes,
            r.metrics_equal,
        ]
        for r in rows
    ]
    return _table(HEAD, body)


def inputs_table(outcomes: list[Outcome]) -> list[str]:
    """One line per bad input: the hole, what was wanted, what happened, whether the file was named."""
    head = ["bad input", "hole", "wanted", "got", "file named", "traceback", "ok"]
    body = [
        [o.name, o.hole, o.expect, o.got, "yes" if o.named else "NO", "YES" if o.traceback else "no",
         "ok" if o.ok else "NOT HANDLED"]
        for o in outcomes
    ]  # fmt: skip
    return _table(head, body)


def _commit() -> str:
    def git(*args: str) -> str:
        res = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return res.stdout.strip()

    dirty = "+uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def result(rows: list[Row], outcomes: list[Outcome], args: dict[str, Any], wall: float) -> dict[str, Any]:
    """The JSON result: machine, load, arguments, the summary rows and every bad input's outcome."""
    load = os.getloadavg()
    return {
        "tool": "scripts/fault_injection.py",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU used",
        "python": sys.version.split()[0],
        "commit": _commit(),
        "load_average_at_end": [round(x, 2) for x in load],
        "args": args,
        "wall_seconds": round(wall, 1),
        "summary": [r.as_dict() for r in rows],
        "bad_inputs": [o.as_dict() for o in outcomes],
        "bad_inputs_fed": len(outcomes),
        "bad_inputs_handled": sum(o.ok for o in outcomes),
        "bad_inputs_not_handled": [o.name for o in outcomes if not o.ok],
    }


def markdown(res: dict[str, Any], rows: list[Row], outcomes: list[Outcome]) -> str:
    """A dated RUNLOG section: the summary table, then the bad inputs that were not handled."""
    a = res["args"]
    lines = [
        f"### Fault injection · {res['date']} · host `{res['host']}` · {res['machine']}",
        "",
        f"`python scripts/fault_injection.py --kills {a['kills']} --seed {a['seed']}` at {res['commit']}: "
        f"{a['train_videos']} train / {a['val_videos']} val videos of the fixture, the tiny Qwen2.5-VL; "
        f"{res['wall_seconds']:.0f} s, load average {res['load_average_at_end'][0]} at the end.",
        "",
        *summary_table(rows),
        "",
        f"Bad inputs: {res['bad_inputs_handled']} of {res['bad_inputs_fed']} refused (or warned) naming the file.",
    ]
    missed = [o for o in outcomes if not o.ok]
    if missed:
        lines += ["Not handled:", ""]
        for o in missed:
            lines.append(
                f"- {o.name}{f' (hole {o.hole})' if o.hole != '-' else ''}: wanted {o.expect}, got {o.got}, file named: "
                f"{'yes' if o.named else 'no'}, traceback: {'yes' if o.traceback else 'no'}"
            )
    return "\n".join(lines) + "\n"


def save(res: dict[str, Any], rows: list[Row], outcomes: list[Outcome], runlog: Path) -> Path:
    """Write the JSON beside ``runlog`` and append the Markdown section to it; returns the JSON path."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench.report import append_markdown

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = runlog.parent / f"{res['host']}-{stamp}-faults.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")
    append_markdown(runlog, markdown(res, rows, outcomes))
    return path
