"""Turn raw MLLM output into validated priors (pure functions, no I/O).

Anything the model writes, garbage included, becomes either valid priors or empty priors with a
reason; nothing here raises on model output.

Events (``parse_events``):
    1. Find the first JSON value in the text (a ``{"events": [...]}`` object or a bare list), even
       when it is wrapped in prose or a code fence.
    2. Each item needs numeric ``start``/``end`` (numbers or numeric strings, seconds) and a text
       under ``description`` (or ``text``/``caption``/``event``).
    3. Clamp spans to ``[0, duration]``; drop items with ``start >= end`` after clamping, empty or
       non-alphanumeric text, or non-finite times.
    4. Merge near-duplicates: items with the same normalised text whose spans overlap or lie within
       ``merge_gap`` seconds become one item covering both; items whose spans have IoU >=
       ``dup_iou`` keep only the first one's text.
    5. Sort by (start, end) and keep at most ``max_events``.

Captions: ``parse_caption`` reads one caption (per-clip mode, plain text or ``{"caption": ...}``),
``parse_captions_dense`` reads ``{"captions": [...]}`` for all clips of a video at once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

OK, PARTIAL, FAILED = "ok", "partial", "failed"
_TEXT_KEYS = ("description", "text", "caption", "event")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r"\s+")
_NORM = re.compile(r"[^0-9a-z]+")
_ALNUM = re.compile(r"[0-9A-Za-z]|[^\x00-\x7f]")
_CUT_CAPTION = re.compile(r'"caption"\s*:\s*"((?:[^"\\]|\\.)*)$', re.DOTALL)


class Event(NamedTuple):
    """One validated event: ``[start, end)`` seconds with ``0 <= start < end <= duration``."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class ParseConfig:
    """Validation knobs. ``merge_gap`` in seconds; ``dup_iou`` in [0, 1]."""

    max_events: int = 32
    max_text_chars: int = 240
    merge_gap: float = 0.5
    dup_iou: float = 0.9

    def __post_init__(self) -> None:
        if self.max_events <= 0:
            raise ValueError(f"max_events must be > 0, got {self.max_events}")
        if self.max_text_chars <= 0:
            raise ValueError(f"max_text_chars must be > 0, got {self.max_text_chars}")
        if self.merge_gap < 0:
            raise ValueError(f"merge_gap must be >= 0, got {self.merge_gap}")
        if not 0.0 < self.dup_iou <= 1.0:
            raise ValueError(f"dup_iou must be in (0, 1], got {self.dup_iou}")


@dataclass
class EventParse:
    """Result of :func:`parse_events`: validated events, a status and the reasons for it."""

    events: list[Event]
    status: str
    notes: list[str] = field(default_factory=list)


def clean_text(value: Any, max_chars: int) -> str:
    """Single-line, trimmed text; ``""`` when it has no letter or digit."""
    if not isinstance(value, str):
        return ""
    text = _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip().strip("\"'` ")
    if not _ALNUM.search(text):
        return ""
    return text[:max_chars].rstrip()


def find_json(text: str) -> Any | None:
    """The first JSON object or array in ``text`` (prose and code fences around it are ignored)."""
    decoder = json.JSONDecoder(strict=False)  # models put raw newlines inside strings
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        return value
    return None


def salvage_list(text: str, key: str) -> list[Any] | None:
    """The complete items of a JSON list under ``"key"`` that was cut off (e.g. at the token limit):
    ``'{"events": [{...}, {...}, {"sta'`` -> the first two items. None when there is no such list."""
    at = text.find(f'"{key}"')
    start = text.find("[", at) if at >= 0 else -1
    if start < 0:
        return None
    decoder = json.JSONDecoder(strict=False)
    items: list[Any] = []
    pos = start + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return items
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return items
        items.append(value)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip().rstrip("s"))
        except ValueError:
            return None
    else:
        return None
    return out if math.isfinite(out) else None


def span_iou(a: tuple[float, float], spans: np.ndarray) -> np.ndarray:
    """Temporal IoU of window ``a`` with each row of ``spans`` (E, 2) -> (E,); 0 where both are empty."""
    spans = np.asarray(spans, np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(a[1], spans[:, 1]) - np.maximum(a[0], spans[:, 0]), 0.0, None)
    union = np.maximum(a[1], spans[:, 1]) - np.minimum(a[0], spans[:, 0])
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _iou(a: Event, b: Event) -> float:
    return float(span_iou((a.start, a.end), np.array([[b.start, b.end]]))[0])


def merge_events(events: list[Event], merge_gap: float, dup_iou: float) -> list[Event]:
    """Merge near-duplicates (see the module docstring) and sort by (start, end)."""
    out: list[Event] = []
    for ev in sorted(events, key=lambda e: (e.start, e.end)):
        key = _NORM.sub(" ", ev.text.lower()).strip()
        for i, kept in enumerate(out):
            same_text = _NORM.sub(" ", kept.text.lower()).strip() == key
            touching = ev.start <= kept.end + merge_gap and kept.start <= ev.end + merge_gap
            if (same_text and touching) or _iou(ev, kept) >= dup_iou:
                out[i] = Event(min(kept.start, ev.start), max(kept.end, ev.end), kept.text)
                break
        else:
            out.append(ev)
    return sorted(out, key=lambda e: (e.start, e.end))


def validate_events(items: list[Any], duration: float, cfg: ParseConfig) -> tuple[list[Event], list[str]]:
    """Validate raw event items; return the events and a note per kind of dropped item."""
    dropped: dict[str, int] = {}
    events: list[Event] = []
    for item in items:
        if not isinstance(item, dict):
            dropped["not an object"] = dropped.get("not an object", 0) + 1
            continue
        start, end = _seconds(item.get("start")), _seconds(item.get("end"))
        text = next((clean_text(item[k], cfg.max_text_chars) for k in _TEXT_KEYS if k in item), "")
        if start is None or end is None:
            reason = "missing or non-numeric start/end"
        elif not text:
            reason = "empty text"
        else:
            start, end = min(max(start, 0.0), duration), min(max(end, 0.0), duration)
            if start < end:
                events.append(Event(start, end, text))
                continue
            reason = "start >= end after clamping"
        dropped[reason] = dropped.get(reason, 0) + 1
    notes = [f"dropped {n} events ({reason})" for reason, n in dropped.items()]
    return events, notes


def parse_events(
    text: str, duration: float, cfg: ParseConfig | None = None, truncated: bool = False
) -> EventParse:
    """Parse model output into events for a video of ``duration`` seconds.

    Status: ``ok`` when at least one event survives and nothing was dropped or truncated,
    ``partial`` when some survive but something was dropped (or the output hit the token limit),
    ``failed`` when none survive.
    """
    cfg = cfg or ParseConfig()
    cut = ["output hit the token limit"] if truncated else []
    value = find_json(text)
    if isinstance(value, dict):
        value = next((value[k] for k in ("events", "Events", "moments") if k in value), None)
    if not isinstance(value, list) and truncated:
        value = salvage_list(text, "events")
        cut = [f"output hit the token limit; kept the {len(value or [])} complete events before it"]
    if not isinstance(value, list):
        return EventParse([], FAILED, ["no JSON event list in output", *cut])
    events, notes = validate_events(value, duration, cfg)
    notes += cut
    merged = merge_events(events, cfg.merge_gap, cfg.dup_iou)
    if len(merged) > cfg.max_events:
        notes.append(f"kept the first {cfg.max_events} of {len(merged)} events")
        merged = merged[: cfg.max_events]
    if not merged:
        return EventParse([], FAILED, notes or ["empty event list"])
    return EventParse(merged, PARTIAL if notes else OK, notes)


def parse_caption(text: str, max_chars: int = 160) -> str:
    """One clip caption from per-clip output; ``""`` when the output holds no usable text."""
    value = find_json(text) if "{" in text else None
    if isinstance(value, dict):
        raw = next((value[k] for k in ("caption", *_TEXT_KEYS) if k in value), "")
        return clean_text(raw, max_chars)
    if value is None and "{" not in text:
        first = next((line for line in text.splitlines() if line.strip()), "")
        return clean_text(first, max_chars)
    cut = _CUT_CAPTION.search(text) if value is None else None  # {"caption": "a man walks int
    return clean_text(cut.group(1), max_chars) if cut else ""


def parse_captions_dense(text: str, num_clips: int, max_chars: int = 160) -> tuple[list[str], list[str]]:
    """``num_clips`` captions from one dense-mode output (``""`` for missing ones) and notes."""
    value = find_json(text)
    if isinstance(value, dict):
        value = value.get("captions")
    elif value is None:
        value = salvage_list(text, "captions")
    if not isinstance(value, list):
        return [""] * num_clips, ["no JSON caption list in output"]
    notes = [] if len(value) == num_clips else [f"{len(value)} captions for {num_clips} clips"]
    caps = [clean_text(v.get("caption") if isinstance(v, dict) else v, max_chars) for v in value[:num_clips]]
    caps += [""] * (num_clips - len(caps))
    return caps, notes


def caption_status(captions: list[str]) -> tuple[str, list[str]]:
    """Status of a video's captions: ok when all clips have one, failed when none do."""
    missing = sum(1 for c in captions if not c)
    if missing == 0:
        return OK, []
    note = [f"{missing}/{len(captions)} clip captions empty"]
    return (FAILED if missing == len(captions) else PARTIAL), note


def combine_status(events_status: str, captions_status: str) -> str:
    """A video is ok when both priors are, failed when both failed, else partial."""
    if events_status == OK and captions_status == OK:
        return OK
    if events_status == FAILED and captions_status == FAILED:
        return FAILED
    return PARTIAL
