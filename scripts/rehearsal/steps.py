"""The rehearsal's commands: ``make`` targets and ``masra`` commands, run in subprocesses and timed.

Every command runs in the repository with the environment ``make`` gives its recipes (offline hub,
no tokenizer threads, unbuffered output), without the variables of an enclosing ``make`` (so that
``make rehearsal DATASET=qvhighlights ARGS=...`` does not pass its own ``DATASET`` and ``ARGS`` down
to the inner ``make train``). ``make`` runs with ``-o .venv/.installed``: the virtualenv is taken as
up to date, so a step never reinstalls it (``make rehearsal`` itself depends on ``make setup``).
Each step's output goes to ``logs/<step>.log`` in the rehearsal folder.
"""

from __future__ import annotations

import os
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sources import REPO

# Variables an enclosing make exports to its recipes; none of them may reach the inner make.
MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DATASET", "ARGS", "RUN", "SPLIT")


@dataclass
class Step:
    """One command of the rehearsal and what came of it.

    ``counts`` holds what the step cut, refitted or skipped (filled by :mod:`rehearsal.report`);
    ``skipped`` says why a step did not run (None: it ran).
    """

    name: str
    command: list[str]
    rc: int | None = None
    seconds: float = 0.0
    log: Path | None = None
    skipped: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    peak_rss_mb: int | None = None  # the largest process of the step, when it set a new high (else None)

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.rc == 0

    def output(self) -> str:
        return (
            self.log.read_text(encoding="utf-8", errors="replace") if self.log and self.log.is_file() else ""
        )

    def error(self, n: int = 12) -> str:
        """The last ``n`` lines of output that look like the reason it failed ('' when it did not)."""
        if self.ok or self.skipped:
            return ""
        lines = [ln for ln in self.output().splitlines() if ln.strip()]
        hits = [ln for ln in lines if "Error" in ln or "error" in ln.lower()[:40]]
        return "\n".join((hits or lines)[-n:])

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "command": shlex.join(self.command),
            "ok": self.ok,
            "returncode": self.rc,
            "seconds": round(self.seconds, 1),
            "peak_rss_mb": self.peak_rss_mb,
            "skipped": self.skipped,
            "counts": self.counts,
            "notes": self.notes,
            "error": self.error(),
            "log": str(self.log) if self.log else None,
        }


def env() -> dict[str, str]:
    """The environment of every command (see the module docstring)."""
    out = {k: v for k, v in os.environ.items() if k not in MAKE_VARS}
    out.update(
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1"
    )
    return out


def masra(*args: str) -> list[str]:
    """The ``masra`` entry point of this interpreter's environment."""
    exe = Path(sys.executable).with_name("masra")
    return [str(exe), *args] if exe.is_file() else [sys.executable, "-m", "masra.pipelines.cli", *args]


def make(target: str, **variables: str) -> list[str]:
    """``make TARGET VAR=value ...`` in the repository, the virtualenv taken as up to date."""
    return [
        "make",
        "--no-print-directory",
        "-o",
        ".venv/.installed",
        target,
        *(f"{k}={v}" for k, v in variables.items()),
    ]


def run_step(step: Step, logs: Path, timeout: float) -> Step:
    """Run ``step.command`` to the end (or ``timeout`` seconds), output to ``logs/<name>.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    step.log = logs / f"{step.name}.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far
    t0 = time.perf_counter()
    with step.log.open("w", encoding="utf-8") as out:
        out.write(f"$ {shlex.join(step.command)}\n")
        out.flush()
        try:
            res = subprocess.run(
                step.command, cwd=REPO, env=env(), stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
            step.rc = res.returncode
        except subprocess.TimeoutExpired:
            step.rc = 124
            out.write(f"\n[rehearsal: killed after {timeout:.0f} s]\n")
    step.seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    step.peak_rss_mb = after // 1024 if after > before else None
    with step.log.open("a", encoding="utf-8") as out:
        out.write(f"\n[rc {step.rc}, {step.seconds:.1f} s]\n")
    return step
