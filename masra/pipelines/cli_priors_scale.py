"""How `masra priors generate` spreads its work: ``--shard i/N``, ``--data-parallel`` worker
processes (local executor), or the Ray executor (``--executor ray``)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

import click

log = logging.getLogger(__name__)

__all__ = ["executor_for", "launch_data_parallel", "parse_shard", "strip_options"]


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard i/N` as (i, N), refused unless 0 <= i < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected i/N, got {text!r}", param_hint="--shard") from None
    if n < 1 or not 0 <= i < n:
        raise click.BadParameter(f"need 0 <= i < N, got {text!r}", param_hint="--shard")
    return i, n


def strip_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` without the options ``names`` and their values (``--x v`` and ``--x=v``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in names:
            skip = True
        elif not any(a.startswith(n + "=") for n in names):
            out.append(a)
    return out


def launch_data_parallel(n: int, tp: int, shard: tuple[int, int]) -> None:
    """Run ``n`` copies of this command, one per GPU group, on disjoint sub-shards."""
    argv = strip_options(sys.argv[1:], ("--data-parallel", "--shard"))
    i, m = shard
    procs = []
    for k in range(n):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(str(k * tp + g) for g in range(tp)))
        cmd = [sys.executable, "-m", "masra.pipelines", *argv, "--shard", f"{i * n + k}/{m * n}"]
        log.info("data-parallel worker %d: %s", k, " ".join(cmd))
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise click.ClickException(f"data-parallel workers exited with codes {codes}")


def executor_for(kw: dict[str, Any]) -> Any:
    """The executor the options name (Ray is imported only when the run has work for it)."""
    from masra.prior_gen.executors import LocalExecutor

    if kw["executor"] == "local":
        if kw["ray_address"]:
            raise ValueError("--ray-address needs --executor ray")
        return LocalExecutor()
    from masra.prior_gen.executors.ray_executor import RayConfig, RayExecutor

    return RayExecutor(
        RayConfig(
            address=kw["ray_address"], replicas=kw["data_parallel"], tensor_parallel=kw["tensor_parallel"]
        )
    )
