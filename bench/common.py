"""Helpers shared by the benchmarks: devices, precision, clocks, memory, the data they train on, and
the command line of the ``bench/*_speed.py`` scripts (:func:`speed_parser`, :func:`speed_main`).

Imports only what the GPU image has (torch, numpy, accelerate, pyarrow, yaml, tqdm, scipy) plus our
package; nothing here needs av, datasets, click or vllm.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import resource
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DTYPES",
    "BenchData",
    "Clock",
    "converged_overrides",
    "env_info",
    "fixed_steps_overrides",
    "load_bench_data",
    "peak_rss_mib",
    "pick_device",
    "resolve_precision",
    "speed_main",
    "speed_parser",
    "summarize",
    "write_json",
]

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no CUDA device")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, no mixed precision on CPU (as the trainer does)."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "no"
    if name not in DTYPES:
        raise ValueError(f"precision must be auto, no, bf16 or fp16, got {name!r}")
    return name


class Clock:
    """Wall-clock timing that waits for queued GPU work first when ``sync`` is on."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def now(self, sync: bool = True) -> float:
        if sync and self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def gpu_peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def summarize(times: list[float]) -> dict[str, float]:
    """Mean, median, min and p90 of a list of seconds (rounded to microseconds)."""
    if not times:
        return {"n": 0}
    srt = sorted(times)
    return {
        "n": len(times),
        "mean_s": round(statistics.fmean(times), 6),
        "median_s": round(statistics.median(times), 6),
        "min_s": round(srt[0], 6),
        "p90_s": round(srt[min(len(srt) - 1, int(0.9 * len(srt)))], 6),
    }


def env_info(device: torch.device) -> dict[str, Any]:
    """Host, CPU count, Python/torch versions and the GPU name (if any)."""
    import os

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpu_threads_torch": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def write_json(path: Path | str, data: dict[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(p)


@contextmanager
def timed(store: dict[str, float], key: str, clock: Clock) -> Iterator[None]:
    t0 = clock.now()
    yield
    store[key] = round(clock.now() - t0, 4)


@dataclass
class BenchData:
    """A dataset the benchmarks read: card (name or path + overrides), store path, prior run (or None)."""

    card: str
    card_overrides: dict[str, Any]
    store_path: Path
    prior_run: str | None
    prior_encoder: str | None
    window_source: str
    description: str
    prior_dim: int = 384


def load_bench_data(meta_path: Path) -> BenchData:
    """Read the ``bench_data.json`` written by :func:`bench.run.prepare_data`."""
    raw = json.loads(Path(meta_path).read_text(encoding="utf-8"))
    return BenchData(
        card=str(raw["card"]),
        card_overrides=dict(raw.get("card_overrides") or {}),
        store_path=Path(raw["store_path"]),
        prior_run=raw.get("prior_run"),
        prior_encoder=raw.get("prior_encoder"),
        window_source=raw.get("window_source", "unknown"),
        description=raw.get("description", ""),
        prior_dim=int(raw.get("prior_dim", 384)),
    )


def fixed_steps_overrides(steps_per_epoch: int, steps: int, warmup_share: float = 0.05) -> dict[str, Any]:
    """TrainConfig overrides of a run of (at least) ``steps`` optimiser steps, scored once at the end:
    ``epochs = ceil(steps / steps_per_epoch)``, one evaluation after the last epoch, linear warm-up over
    ``warmup_share`` of the epochs (the label-efficiency study's budget, ``bench/label_efficiency.py``).

    >>> fixed_steps_overrides(3, 500)
    {'epochs': 167, 'eval_every': 167, 'warmup_epochs': 8.35}
    """
    epochs = -(-steps // steps_per_epoch)
    return {"epochs": epochs, "eval_every": epochs, "warmup_epochs": round(warmup_share * epochs, 3)}


def converged_overrides(
    steps_per_epoch: int, *, max_steps: int, eval_steps: int, min_steps: int, warmup_steps: int = 500
) -> dict[str, Any]:
    """TrainConfig overrides of a run trained until its held-out metric stops improving (the converged
    study's budget, ``bench/converged.py``): at most ``max_steps`` steps, an evaluation about every
    ``eval_steps`` steps, no early stop before ``min_steps``, warm-up over 5 % of the first
    ``warmup_steps`` steps' epochs. ``early_stop_patience`` is the caller's.

    >>> converged_overrides(25, max_steps=3000, eval_steps=100, min_steps=1000)
    {'epochs': 120, 'eval_every': 4, 'early_stop_min_epochs': 40, 'warmup_epochs': 1.0}
    """
    epochs = -(-max_steps // steps_per_epoch)
    return {
        "epochs": epochs,
        "eval_every": max(1, round(eval_steps / steps_per_epoch)),
        "early_stop_min_epochs": -(-min_steps // steps_per_epoch),
        "warmup_epochs": round(0.05 * min(epochs, -(-warmup_steps // steps_per_epoch)), 3),
    }


SpeedRun = Callable[[argparse.Namespace, Callable[[dict[str, Any]], None]], dict[str, Any]]
"""A speed benchmark's body: (parsed arguments, ``on_partial``) -> the result; it may hand each partial
result to ``on_partial`` (written to ``--json`` at once, so a killed run keeps what it measured)."""


def speed_parser(
    doc: str | None, *, data: bool = True, torch_options: bool = True
) -> argparse.ArgumentParser:
    """The arguments every ``bench/*_speed.py`` shares; the script adds its own.

    ``--json`` (required: where the results go); with ``data``, ``--data`` (the ``bench_data.json``
    that :mod:`bench.run` writes); with ``torch_options``, ``--device``, ``--precision`` and
    ``--threads``.
    """
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if data:
        p.add_argument("--data", type=Path, required=True, help="bench_data.json written by bench.run")
    if torch_options:
        p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda")
        p.add_argument("--precision", default="auto", help="auto (bf16 on CUDA, else no), no, bf16 or fp16")
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", type=Path, required=True, help="where to write the results")
    return p


def speed_main(
    parser: argparse.ArgumentParser, run: SpeedRun, argv: list[str] | None = None
) -> dict[str, Any]:
    """The ``main`` of every ``bench/*_speed.py``: parse ``argv``, log at INFO, set torch's CPU threads
    (``--threads`` > 0), run, and write the result (and each partial one) to ``--json``."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    result = run(args, lambda partial: write_json(args.json, partial))
    write_json(args.json, result)
    logging.getLogger(__name__).info("results written to %s", args.json)
    return result


def study_stamp(jobs: int, commit: str) -> tuple[dict[str, str], dt.datetime]:
    """The head of a training study's results: the machine (cores, trainings at a time, load at the
    end), the commit and the date; and the time it was taken, for the file name."""
    load = os.getloadavg()
    now = dt.datetime.now(dt.timezone.utc)
    head = {
        "machine": f"{socket.gethostname()}: CPU only, {os.cpu_count()} cores, {jobs} runs at a time, "
        f"1 torch thread each, load average {load[0]:.1f} at the end",
        "commit": commit,
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
    }
    return head, now
