"""Helpers shared by the benchmarks: devices, precision, clocks, memory, and the data they train on.

Imports only what the GPU image has (torch, numpy, accelerate, pyarrow, yaml, tqdm, scipy) plus our
package; nothing here needs av, datasets, click or vllm.
"""

from __future__ import annotations

import json
import platform
import resource
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DTYPES",
    "BenchData",
    "Clock",
    "env_info",
    "load_bench_data",
    "peak_rss_mib",
    "pick_device",
    "resolve_precision",
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
