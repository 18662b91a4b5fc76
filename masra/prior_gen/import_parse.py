"""Reading and validating an import file of priors written elsewhere (JSON lines; writes nothing).

The row rules are in :mod:`masra.prior_gen.importer`'s docstring; this module applies them line by
line and collects the valid rows, the refusals (``file:line: reason``) and the refit warnings.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from masra.datasets.grid import kept_clips
from masra.datasets.grid import num_clips as grid_clips
from masra.datasets.ids import id_problem

__all__ = [
    "MAX_UNCAPPED_CLIPS",
    "REQUIRED_KEYS",
    "ImportedVideo",
    "ParsedImport",
    "check_grid",
    "check_video_id",
    "parse_import_file",
    "refit_captions",
]

REQUIRED_KEYS = ("vid", "duration", "events", "clip_captions")
# Without a card cap, a row needing more clips than this is refused rather than refitted into an
# enormous caption list (100,000 one-second clips is a 28-hour video).
MAX_UNCAPPED_CLIPS = 100_000


class _Bad(ValueError):
    """One row's reason for refusal (caught per row, never raised to callers)."""


@dataclass(frozen=True)
class ImportedVideo:
    """One validated input row: ``events`` as ``[{start, end, text}]``, ``clip_captions`` already
    ``num_clips`` long (refitted where the file had another count); ``line`` is 1-based."""

    vid: str
    duration: float
    num_clips: int
    events: list[dict[str, Any]]
    clip_captions: list[str]
    line: int


@dataclass(frozen=True)
class ParsedImport:
    """What :func:`parse_import_file` found.

    Attributes:
        file: the source path as given (used in messages).
        sha256: hex digest of the file's bytes.
        rows_read: non-empty lines.
        videos: the valid rows, in file order.
        refused: ``"file:line: reason"`` for each invalid row.
        refitted: ``"file:line: ..."`` warnings for rows whose caption count was refitted.
    """

    file: str
    sha256: str
    rows_read: int
    videos: list[ImportedVideo]
    refused: list[str]
    refitted: list[str]


def check_video_id(vid: object, what: str = "vid") -> str | None:
    """The reason ``vid`` is not a usable video id (it names files such as ``{vid}.npz``), or None.

    ``what`` names the value in the reason (``"vid"``; the CLI checks run names with it too). The rule
    is the annotation readers' (:func:`masra.datasets.ids.id_problem`).
    """
    if not isinstance(vid, str):
        return f"{what} must be a string, got {_kind(vid)}"
    return id_problem(vid, what)


def refit_captions(captions: Sequence[str], num_clips: int, duration: float, clip_len: float) -> list[str]:
    """Resample ``captions`` (M >= 1, read as equal shares of ``[0, duration)``) to ``num_clips``.

    Clip ``i`` (centre ``(i + 0.5) * clip_len``, clamped to the duration) takes caption
    ``floor(centre * M / duration)``, i.e. the caption nearest in time. Returns ``num_clips`` strings.
    """
    m = len(captions)
    if m == 0:
        raise ValueError("cannot refit an empty caption list")
    out = []
    for i in range(num_clips):
        centre = min((i + 0.5) * clip_len, duration)
        out.append(captions[min(m - 1, int(centre * m / duration))])
    return out


def _kind(x: object) -> str:
    """JSON-ish name of a value's type, for messages."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(x), type(x).__name__)


def _number(x: object, what: str) -> float:
    """``x`` as a finite float (JSON numbers only; booleans are not numbers)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise _Bad(f"{what} must be a number, got {_kind(x)}")
    try:
        value = float(x)
    except OverflowError:
        raise _Bad(f"{what} is too large") from None
    if not math.isfinite(value):
        raise _Bad(f"{what} must be finite, got {value}")
    return value


def _events(raw: object, duration: float) -> list[dict[str, Any]]:
    """Validate the ``events`` value of a row -> ``[{start, end, text}]``."""
    if not isinstance(raw, list):
        raise _Bad(f"events must be a list, got {_kind(raw)}")
    out = []
    for k, ev in enumerate(raw):
        where = f"events[{k}]"
        if not isinstance(ev, dict):
            raise _Bad(f"{where} must be an object, got {_kind(ev)}")
        missing = [key for key in ("start", "end", "text") if key not in ev]
        if missing:
            raise _Bad(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
        start, end = _number(ev["start"], f"{where}.start"), _number(ev["end"], f"{where}.end")
        if start < 0 or end > duration:
            raise _Bad(f"{where}: span [{start:g}, {end:g}] is outside the video [0, {duration:g}]")
        if start >= end:
            raise _Bad(f"{where}: start {start:g} is not before end {end:g}")
        text = ev["text"]
        if not isinstance(text, str):
            raise _Bad(f"{where}.text must be a string, got {_kind(text)}")
        if not text.strip():
            raise _Bad(f"{where}.text is empty")
        out.append({"start": start, "end": end, "text": text})
    return out


def _captions(raw: object) -> list[str]:
    """Validate the ``clip_captions`` value of a row (a list of strings)."""
    if not isinstance(raw, list):
        raise _Bad(f"clip_captions must be a list, got {_kind(raw)}")
    bad = next((k for k, c in enumerate(raw) if not isinstance(c, str)), None)
    if bad is not None:
        raise _Bad(f"clip_captions[{bad}] must be a string, got {_kind(raw[bad])}")
    return list(raw)


def _parse_row(
    text: str, line: int, seen: dict[str, int], clip_len: float, max_clips: int | None
) -> tuple[ImportedVideo, int]:
    """Validate one non-empty line -> (video, caption count in the file). Raises ``_Bad``."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise _Bad(f"not valid JSON ({e.msg} at column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer too long, nesting too deep
        raise _Bad(f"not valid JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise _Bad(f"expected a JSON object, got {_kind(obj)}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise _Bad(f"missing key(s) {', '.join(map(repr, missing))}")
    vid = obj["vid"]
    reason = check_video_id(vid)
    if reason:
        raise _Bad(reason)
    if vid in seen:
        raise _Bad(f"duplicate vid {vid!r} (first on line {seen[vid]})")
    seen[vid] = line
    duration = _number(obj["duration"], "duration")
    if duration <= 0:
        raise _Bad(f"duration must be > 0, got {duration:g}")
    events = _events(obj["events"], duration)
    captions = _captions(obj["clip_captions"])
    num_clips = (
        grid_clips(duration, clip_len) if max_clips is None else kept_clips(duration, clip_len, max_clips)
    )
    if max_clips is None and num_clips > MAX_UNCAPPED_CLIPS:
        raise _Bad(f"duration {duration:g} s needs {num_clips} clips, more than {MAX_UNCAPPED_CLIPS}")
    count = len(captions)
    if count != num_clips:
        if count == 0:
            raise _Bad(f"clip_captions is empty; the video has {num_clips} clips of {clip_len:g} s")
        captions = refit_captions(captions, num_clips, duration, clip_len)
    return ImportedVideo(vid, duration, num_clips, events, captions, line), count


def check_grid(clip_len: float, max_clips: int | None) -> None:
    if isinstance(clip_len, bool) or not math.isfinite(clip_len) or clip_len <= 0:
        raise ValueError(f"clip_len must be a finite number > 0, got {clip_len}")
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be >= 1 or None, got {max_clips}")


def parse_import_file(
    source: str | os.PathLike[str], *, clip_len: float, max_clips: int | None = None
) -> ParsedImport:
    """Read and validate a JSON-lines prior file (see the module docstring); writes nothing.

    Raises:
        ValueError: bad ``clip_len`` / ``max_clips``.
        OSError: the file cannot be read (missing, a folder, no permission).
    """
    check_grid(clip_len, max_clips)
    name = str(source)
    digest = hashlib.sha256()
    videos: list[ImportedVideo] = []
    refused: list[str] = []
    refitted: list[str] = []
    seen: dict[str, int] = {}
    rows_read = 0
    with open(source, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            digest.update(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                rows_read += 1
                refused.append(f"{name}:{line_no}: not UTF-8 text (byte {e.start + 1})")
                continue
            if line_no == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            rows_read += 1
            try:
                video, count = _parse_row(text, line_no, seen, clip_len, max_clips)
            except _Bad as e:
                refused.append(f"{name}:{line_no}: {e}")
                continue
            videos.append(video)
            if count != video.num_clips:
                refitted.append(
                    f"{name}:{line_no}: vid {video.vid!r} has {count} clip captions for {video.num_clips} "
                    f"clips of {clip_len:g} s; refitted by nearest-neighbour resampling in time"
                )
    return ParsedImport(name, digest.hexdigest(), rows_read, videos, refused, refitted)
