"""Readers for the annotation formats of the VTG benchmarks.

Each reader returns ``(queries, report)``. A malformed line raises :class:`AnnotationError` naming the
file, the 1-based line number and the problem. Where standard practice is to drop or clip an entry
(Charades-STA txt rows with ``start >= end``, window ends past the video duration) the reader does so,
counts it in the :class:`ReadReport` and logs a summary: nothing is changed silently.

Formats:

``qvhighlights``
    jsonl; ``qid`` (int), ``query``, ``duration``, ``vid``, and on labelled splits
    ``relevant_windows`` ([[start, end], ...]), ``relevant_clip_ids`` and ``saliency_scores`` (one
    list of annotator scores in 0-4 per clip id). The test split has no labels.
``charades_txt``
    ``vid start end##sentence`` per line plus a durations file (``vid<TAB>length_s[<TAB>split]``, an
    optional header line). The qid of a row is its 0-based line index, stable whatever is dropped,
    plus the line counts of the card's splits listed before it (``train`` 0..N-1, then ``test`` from
    N on), so that qids, and the ``qid{qid}.npz`` query-feature files named by them, are unique
    across a card's splits (:func:`txt_qid_offset`).
``charades_jsonl`` / ``tacos``
    jsonl with ``qid``, ``query``, ``duration``, ``vid``, ``relevant_windows``; TACoS qids are strings.

Video ids and string qids name feature files, so an id that is not a bare file name (``/``, ``\\``,
``..``, an absolute path, ...; see :mod:`masra.datasets.ids`) is an error with ``file:line`` in every
format, durations files included.

A window of a jsonl file with ``start >= end`` is an error (these files are curated; a zero-length
moment is a bug upstream). Ends past the duration are clipped and counted in every format.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from masra.datasets.card import DatasetCard
from masra.datasets.grid import num_clips as grid_clips
from masra.datasets.ids import id_problem
from masra.datasets.types import AnnotationError, Query, QueryId, ReadReport

log = logging.getLogger(__name__)

# Window ends may exceed the duration by rounding noise; only more than this is reported as clipped.
END_TOLERANCE = 1e-6
MAX_SALIENCY = 4

DROP_START_GE_END = "start >= end"
DROP_START_PAST_DURATION = "start at or past the video duration"
CLIP_END = "window end past the video duration"
CLIP_START = "window start before 0"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, stripped line) for non-blank lines; any trailing newline or none."""
    with open(path, encoding="utf-8-sig") as f:  # a UTF-8 BOM is tolerated
        for i, raw in enumerate(f, start=1):
            line = raw.strip()
            if line:
                yield i, line


def _number(value: Any, where: tuple[str, int], name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnnotationError(*where, f"{name} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise AnnotationError(*where, f"{name} must be finite, got {value!r}")
    return x


def _field(record: dict[str, Any], key: str, where: tuple[str, int]) -> Any:
    if key not in record:
        raise AnnotationError(*where, f"missing field {key!r} (fields present: {sorted(record)})")
    return record[key]


def _qid(value: Any, where: tuple[str, int], kind: type) -> QueryId:
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AnnotationError(*where, f"qid must be an integer, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise AnnotationError(*where, f"qid must be a non-empty string, got {value!r}")
    _check_id(str(value), where, "qid")
    return str(value)


def _check_id(value: str, where: tuple[str, int], what: str) -> None:
    """Reject an id that is not a bare file name (it names feature files; see masra.datasets.ids)."""
    problem = id_problem(value, what)
    if problem is not None:
        raise AnnotationError(*where, problem)


def _window(pair: Any, duration: float, where: tuple[str, int], report: ReadReport) -> tuple[float, float]:
    """Validate one ``[start, end]``; clip it to ``[0, duration]`` and count any clipping."""
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise AnnotationError(*where, f"a window must be [start, end], got {pair!r}")
    start = _number(pair[0], where, "window start")
    end = _number(pair[1], where, "window end")
    if start >= end:
        raise AnnotationError(*where, f"window {pair!r} has start >= end")
    ref = f"{where[0]}:{where[1]}"
    if start < 0:
        report.note("clipped", CLIP_START, ref)
        start = 0.0
    if end > duration + END_TOLERANCE:
        report.note("clipped", CLIP_END, ref)
    end = min(end, duration)
    if start >= end:
        raise AnnotationError(*where, f"window {pair!r} starts at or past the video duration {duration}")
    return start, end


def _saliency(
    record: dict[str, Any], where: tuple[str, int], clip_len: float | None, duration: float
) -> tuple[tuple[int, ...] | None, tuple[tuple[int, ...], ...] | None]:
    has_ids, has_scores = "relevant_clip_ids" in record, "saliency_scores" in record
    if not has_ids and not has_scores:
        return None, None
    if has_ids != has_scores:
        raise AnnotationError(*where, "relevant_clip_ids and saliency_scores must be given together")
    ids, scores = record["relevant_clip_ids"], record["saliency_scores"]
    if not isinstance(ids, list) or not isinstance(scores, list):
        raise AnnotationError(*where, "relevant_clip_ids and saliency_scores must be lists")
    if len(ids) != len(scores):
        raise AnnotationError(*where, f"{len(ids)} relevant_clip_ids but {len(scores)} saliency_scores rows")
    num_clips = grid_clips(duration, clip_len) if clip_len else None
    for cid in ids:
        if isinstance(cid, bool) or not isinstance(cid, int) or cid < 0:
            raise AnnotationError(*where, f"relevant_clip_ids must be non-negative integers, got {cid!r}")
        if num_clips is not None and cid >= num_clips:
            raise AnnotationError(
                *where, f"clip id {cid} is past the last clip ({num_clips} clips of {clip_len} s)"
            )
    width = len(scores[0]) if scores else 0
    rows: list[tuple[int, ...]] = []
    for row in scores:
        if not isinstance(row, list) or not row or len(row) != width:
            raise AnnotationError(*where, f"saliency_scores rows must be equal-length lists, got {row!r}")
        for s in row:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SALIENCY:
                raise AnnotationError(
                    *where, f"saliency scores must be integers in 0-{MAX_SALIENCY}, got {s!r}"
                )
        rows.append(tuple(row))
    return tuple(ids), tuple(rows)


def _read_jsonl(
    path: Path, qid_kind: type, with_saliency: bool, clip_len: float | None = None
) -> tuple[list[Query], ReadReport]:
    path = Path(path)
    report = ReadReport(path=str(path))
    queries: list[Query] = []
    seen: dict[QueryId, int] = {}
    for lineno, line in _lines(path):
        where = (str(path), lineno)
        report.lines += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise AnnotationError(*where, f"invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise AnnotationError(*where, f"expected a JSON object, got {type(record).__name__}")
        qid = _qid(_field(record, "qid", where), where, qid_kind)
        if qid in seen:
            raise AnnotationError(*where, f"duplicate qid {qid!r} (first on line {seen[qid]})")
        seen[qid] = lineno
        text = _field(record, "query", where)
        if not isinstance(text, str) or not text.strip():
            raise AnnotationError(*where, f"query must be a non-empty string, got {text!r}")
        vid = _field(record, "vid", where)
        if not isinstance(vid, str) or not vid:
            raise AnnotationError(*where, f"vid must be a non-empty string, got {vid!r}")
        _check_id(vid, where, "vid")
        duration = _number(_field(record, "duration", where), where, "duration")
        if duration <= 0:
            raise AnnotationError(*where, f"duration must be > 0, got {duration}")
        raw_windows = record.get("relevant_windows", [])
        if not isinstance(raw_windows, list):
            raise AnnotationError(*where, f"relevant_windows must be a list, got {raw_windows!r}")
        windows = tuple(_window(w, duration, where, report) for w in raw_windows)
        ids, scores = _saliency(record, where, clip_len, duration) if with_saliency else (None, None)
        queries.append(Query(qid, text.strip(), vid, duration, windows, ids, scores))
    _log_report(report)
    return queries, report


def read_qvhighlights_jsonl(path: Path, *, clip_len: float | None = None) -> tuple[list[Query], ReadReport]:
    """Read QVHighlights jsonl. With ``clip_len``, saliency clip ids past the clip grid are errors."""
    return _read_jsonl(path, int, with_saliency=True, clip_len=clip_len)


def read_charades_jsonl(path: Path) -> tuple[list[Query], ReadReport]:
    """Read the QVHighlights-style Charades-STA jsonl (int qids, no saliency)."""
    return _read_jsonl(path, int, with_saliency=False)


def read_tacos_jsonl(path: Path) -> tuple[list[Query], ReadReport]:
    """Read TACoS jsonl (string qids, no saliency)."""
    return _read_jsonl(path, str, with_saliency=False)


def read_durations(path: Path) -> dict[str, float]:
    """``vid -> duration`` from a tab- or whitespace-separated file; a header line is skipped."""
    path = Path(path)
    out: dict[str, float] = {}
    for lineno, line in _lines(path):
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2:
            raise AnnotationError(str(path), lineno, f"expected `vid<TAB>duration`, got {line!r}")
        try:
            duration = float(parts[1])
        except ValueError:
            if lineno == 1 or not out:  # a header line such as `vid length_s split`
                continue
            raise AnnotationError(str(path), lineno, f"duration {parts[1]!r} is not a number") from None
        if not math.isfinite(duration) or duration <= 0:
            raise AnnotationError(str(path), lineno, f"duration must be a positive number, got {parts[1]!r}")
        _check_id(parts[0].strip(), (str(path), lineno), "vid")
        out[parts[0].strip()] = duration
    if not out:
        raise ValueError(f"{path}: no durations found")
    return out


def read_charades_txt(
    path: Path, durations_path: Path, qid_offset: int = 0
) -> tuple[list[Query], ReadReport]:
    """Read Charades-STA txt (``vid start end##sentence``) with the durations file.

    A row's qid is ``qid_offset`` plus its 0-based line index.

    Rows with ``start >= end`` are dropped and counted (standard practice; the released jsonl drops the
    same rows). Ends past the video duration are clipped to it and counted.
    """
    path = Path(path)
    durations = read_durations(durations_path)
    report = ReadReport(path=str(path))
    queries: list[Query] = []
    for lineno, line in _lines(path):
        where = (str(path), lineno)
        report.lines += 1
        if "##" not in line:
            raise AnnotationError(*where, "expected `vid start end##sentence` (no `##` found)")
        head, sentence = line.split("##", 1)
        parts = head.split()
        if len(parts) != 3:
            raise AnnotationError(*where, f"expected `vid start end` before `##`, got {head!r}")
        vid = parts[0]
        _check_id(vid, where, "vid")
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            raise AnnotationError(
                *where, f"start/end must be numbers, got {parts[1]!r} {parts[2]!r}"
            ) from None
        if not (math.isfinite(start) and math.isfinite(end)):
            raise AnnotationError(*where, f"start/end must be finite, got {parts[1]!r} {parts[2]!r}")
        if not sentence.strip():
            raise AnnotationError(*where, "empty sentence after `##`")
        if vid not in durations:
            raise AnnotationError(*where, f"video {vid!r} is not in the durations file {durations_path}")
        duration = durations[vid]
        ref = f"{path}:{lineno}"
        if start >= end:
            report.note("dropped", DROP_START_GE_END, ref)
            continue
        if start >= duration:
            report.note("dropped", DROP_START_PAST_DURATION, ref)
            continue
        if start < 0:
            report.note("clipped", CLIP_START, ref)
            start = 0.0
        if end > duration + END_TOLERANCE:
            report.note("clipped", CLIP_END, ref)
        end = min(end, duration)
        queries.append(Query(qid_offset + lineno - 1, sentence.strip(), vid, duration, ((start, end),)))
    _log_report(report)
    return queries, report


def _log_report(report: ReadReport) -> None:
    if not (report.dropped or report.clipped):
        log.debug("%s", report.summary())
        return
    examples = "; ".join(
        f"{reason}: e.g. lines {', '.join(e.rsplit(':', 1)[-1] for e in ex)}"
        for reason, ex in report.examples.items()
    )
    log.warning("%s (%s)", report.summary(), examples)


def load_queries(card: DatasetCard, split: str, path: Path | None = None) -> tuple[list[Query], ReadReport]:
    """Read the queries of ``split`` with the reader named by ``card.format``.

    ``path`` overrides the card's annotation file for the split (the split then only names it).
    """
    ann = Path(path) if path is not None else card.annotation_path(split)
    if not ann.is_file():
        raise FileNotFoundError(
            f"annotation file for dataset {card.name!r} split {split!r} not found: {ann} "
            f"(point the card at your download, e.g. --set root=/path/to/{card.name})"
        )
    readers: dict[str, Callable[[], tuple[list[Query], ReadReport]]] = {
        "qvhighlights": lambda: read_qvhighlights_jsonl(ann, clip_len=card.clip_len),
        "charades_txt": lambda: read_charades_txt(
            ann, _durations(card, ann if path is not None else None), txt_qid_offset(card, split)
        ),
        "charades_jsonl": lambda: read_charades_jsonl(ann),
        "tacos": lambda: read_tacos_jsonl(ann),
    }
    return readers[card.format]()


def txt_qid_offset(card: DatasetCard, split: str) -> int:
    """First qid of ``split`` in a ``charades_txt`` card: the lines of the card's splits before it.

    Without it the train and test files would both number their rows from 0, their queries would
    share qids, and one ``qid{qid}.npz`` file would have to hold the features of two sentences.
    A split the card does not list starts at 0, and so does one whose earlier splits' files are
    missing (with a warning).
    """
    names = list(card.annotations)
    if split not in names:
        return 0
    offset = 0
    for before in names[: names.index(split)]:
        path = card.annotation_path(before)
        if not path.is_file():
            log.warning(
                "dataset %r: the qids of split %r continue those of split %r, whose annotation file %s "
                "is missing; numbering %r from 0 (its qids may then clash with %r's)",
                card.name, split, before, path, split, before,
            )  # fmt: skip
            return 0
        with open(path, "rb") as f:
            data = f.read()
        offset += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return offset


def _durations(card: DatasetCard, annotations: Path | None = None) -> Path:
    """The durations file: beside ``annotations`` (a file given instead of the card's) when one of the
    card's durations file name is there, else the card's own."""
    if card.durations is None:  # the card validates this; kept for the type checker
        raise ValueError(f"card {card.name!r}: the charades_txt format needs a `durations` file")
    if annotations is not None:
        beside = annotations.parent / card.durations.name
        if beside.is_file():
            if beside.resolve() != card.durations.resolve():
                log.info("durations of %s read from %s (beside the annotations)", annotations.name, beside)
            return beside
    if not card.durations.is_file():
        looked = f" (looked beside {annotations} first)" if annotations is not None else ""
        raise FileNotFoundError(
            f"durations file of dataset {card.name!r} not found: {card.durations}{looked}"
        )
    return card.durations
