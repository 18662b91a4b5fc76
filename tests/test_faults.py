"""The fault-injection suite (scripts/fault_injection.py, `make test-faults`) with two kills per stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_fault_injection_with_two_kills(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "fault_injection.py"),
        "--kills",
        "2",
        "--work",
        str(tmp_path),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rows duplicated" in res.stdout and "training SIGKILL" in res.stdout


def test_parser_defaults() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import fault_injection
    finally:
        sys.path.remove(str(REPO / "scripts"))
    args = fault_injection.build_parser().parse_args([])
    assert args.kills == 20 and args.seed == 0 and args.work is None
