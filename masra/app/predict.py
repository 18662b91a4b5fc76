"""What the web demo computes, without Gradio: checkpoint + video file + query in, windows and a timeline out.

:func:`predict_for_app` is the one function the page calls. It loads the checkpoint (kept across
calls, keyed by its folder and the mtime of its weights), grounds the query in the video through
:func:`~masra.grounding.infer.run.run_checkpoint` (the entry ``masra predict --video`` calls: the
card's registered extractors), and draws the timeline with :mod:`masra.viz.timeline`: the top
windows with their scores and the saliency curve. Every failure a user can cause (no checkpoint,
an unreadable video, an empty query, missing extractor weights) is an :class:`AppError` whose message
is one line, shown on the page.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from masra.grounding.infer.grounder import Grounder

__all__ = ["TABLE_HEADERS", "AppError", "AppResult", "load_grounder", "predict_for_app"]

TABLE_HEADERS = ["rank", "start (s)", "end (s)", "score"]

_lock = threading.Lock()  # one prediction at a time: the page may get concurrent submits
_cache: dict[tuple[str, str, int], Grounder] = {}


class AppError(ValueError):
    """A problem the user can fix; ``str()`` is one line."""


@dataclass
class AppResult:
    """One query grounded in one video.

    Attributes:
        windows: ``[[start_s, end_s, score], ...]`` best first, as ``masra predict --json`` prints them.
        rows: the windows as table rows (``TABLE_HEADERS``).
        timeline: PNG of the timeline (top windows and the saliency curve).
        duration: video duration in seconds.
        num_clips: clips of the video.
        num_windows: model passes (more than 1 for videos longer than the trained length).
        summary: one line for the page.
    """

    windows: list[list[float]]
    rows: list[list[float | int]]
    timeline: Path
    duration: float
    num_clips: int
    num_windows: int
    summary: str


def load_grounder(checkpoint: str | os.PathLike[str], device: str = "cpu") -> Grounder:
    """The Grounder of a checkpoint (a checkpoint folder or a run folder), read with the one reader
    (:func:`~masra.grounding.checkpoint.read_checkpoint`), loaded once per folder, device and
    weights file version."""
    from masra.grounding.checkpoint import resolve_checkpoint
    from masra.grounding.infer.grounder import Grounder

    given = Path(checkpoint).expanduser()
    folder = resolve_checkpoint(given)
    weights = folder / "model.safetensors"
    if not folder.is_dir() or not (folder / "config.json").is_file() or not weights.is_file():
        raise AppError(f"checkpoint {given}: not a checkpoint folder (config.json + model.safetensors)")
    key = (str(folder.resolve()), device, weights.stat().st_mtime_ns)
    if key not in _cache:
        try:
            grounder = Grounder.from_pretrained(folder, device=device)
        except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
            raise AppError(f"checkpoint {given}: {_one_line(e)}") from None
        _cache.clear()  # keep one model in memory
        _cache[key] = grounder
    return _cache[key]


def _one_line(e: Exception) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split())


def predict_for_app(
    checkpoint: str | os.PathLike[str] | None,
    video: str | os.PathLike[str] | None,
    query: str | None,
    *,
    top_k: int = 5,
    device: str = "cpu",
    out_dir: str | os.PathLike[str] | None = None,
) -> AppResult:
    """Ground ``query`` in ``video`` with ``checkpoint``; the windows, table rows and a timeline PNG.

    Args:
        checkpoint: checkpoint folder (``config.json`` + ``model.safetensors``).
        video: a video file of any length.
        query: one sentence.
        top_k: windows shown.
        device: torch device of the model and the extractors.
        out_dir: where the timeline PNG goes (default: a fresh temporary folder).
    Raises:
        AppError: one line saying what to fix.
    """
    from masra.grounding.infer.run import VideoInput, run_checkpoint
    from masra.hub import ModelUnavailableError
    from masra.video_io import VideoIOError
    from masra.viz.timeline import TimelineData, render_timeline

    if not checkpoint or not str(checkpoint).strip():
        raise AppError("choose a checkpoint folder (e.g. runs/fixture/best)")
    if not video:
        raise AppError("drop a video file first")
    if not query or not query.strip():
        raise AppError("type a query")
    if top_k < 1:
        raise AppError(f"top-k must be >= 1, got {top_k}")
    with _lock:
        grounder = load_grounder(str(checkpoint).strip(), device)
        try:
            outcome = run_checkpoint(grounder, VideoInput((query.strip(),), video=Path(video)), top_k=top_k)
        except (VideoIOError, ModelUnavailableError) as e:
            raise AppError(_one_line(e)) from None
        except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
            raise AppError(f"{Path(video).name}: {_one_line(e)}") from None
    [res] = outcome.groundings
    duration = float(res.extra["duration"])
    num_clips = int(res.extra["num_clips"])
    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="masra_app_"))
    data = TimelineData(
        qid="query",
        query=query.strip(),
        duration=max(duration, num_clips * grounder.config.clip_len, 1e-3),
        clip_len=grounder.config.clip_len,
        pred_windows=[(s, e, c) for s, e, c in res.windows],
        saliency=[float(v) for v in res.saliency],
        vid=Path(video).name,
        labelled=False,
    )
    png = render_timeline(data, folder / "timeline.png", top_k=top_k)
    rows: list[list[float | int]] = [[i, s, e, c] for i, (s, e, c) in enumerate(res.windows, start=1)]
    summary = (
        f"{Path(video).name}: {duration:.1f} s, {num_clips} clips, {res.num_windows} model pass(es); "
        f"top window {res.windows[0][0]:.2f}-{res.windows[0][1]:.2f} s"
        if res.windows
        else f"{Path(video).name}: no windows"
    )
    return AppResult(res.windows, rows, png, duration, num_clips, res.num_windows, summary)
