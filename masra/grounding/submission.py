"""The standard VTG submission format: read, validate and write prediction files.

One JSON object per line::

    {"qid": 1872, "query": "...", "vid": "...",
     "pred_relevant_windows": [[start, end, score], ...],   # seconds, sorted by score descending
     "pred_saliency_scores": [s0, s1, ...]}                 # one per 2-s clip (QVHighlights only)

This is the format of the QVHighlights leaderboard and of every published DETR-style VTG codebase,
so files written here can be scored by other tools and files of other methods can be scored by
:func:`masra.grounding.metrics.evaluate_submission`.

A malformed line raises :class:`SubmissionError` naming the file and the 1-based line number.
Nothing here imports torch or model code.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.datasets.types import AnnotationError, QueryId

log = logging.getLogger(__name__)

Window = tuple[float, float, float]


class SubmissionError(AnnotationError):
    """A malformed prediction line; the message reads ``path:line: problem``."""


@dataclass(frozen=True)
class Prediction:
    """The predictions for one query.

    Attributes:
        qid: query id, as in the annotation file.
        windows: ``(start, end, score)`` in seconds, in file order (the standard order is by score,
            descending; scoring uses the file order exactly as the standard tool does).
        saliency: one score per clip, or None for moment-retrieval-only submissions.
        vid: video id (optional, carried through).
        query: query sentence (optional, carried through).
    """

    qid: QueryId
    windows: tuple[Window, ...] = ()
    saliency: tuple[float, ...] | None = None
    vid: str | None = None
    query: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The submission-line dict (keys in the standard order; absent optional fields left out)."""
        out: dict[str, Any] = {"qid": self.qid}
        if self.query is not None:
            out["query"] = self.query
        if self.vid is not None:
            out["vid"] = self.vid
        out["pred_relevant_windows"] = [[float(s), float(e), float(c)] for s, e, c in self.windows]
        if self.saliency is not None:
            out["pred_saliency_scores"] = [float(x) for x in self.saliency]
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], where: tuple[str, int] = ("<memory>", 0)) -> Prediction:
        """Validate one submission record. ``where`` = (file, line) for the error message."""
        if not isinstance(record, Mapping):
            raise SubmissionError(*where, f"expected a JSON object, got {type(record).__name__}")
        if "qid" not in record:
            raise SubmissionError(*where, f"missing field 'qid' (fields present: {sorted(record)})")
        qid = record["qid"]
        if isinstance(qid, bool) or not isinstance(qid, int | str) or qid == "":
            raise SubmissionError(*where, f"qid must be an integer or a non-empty string, got {qid!r}")
        if "pred_relevant_windows" not in record:
            raise SubmissionError(*where, f"qid {qid!r}: missing field 'pred_relevant_windows'")
        raw = record["pred_relevant_windows"]
        if not isinstance(raw, list):
            raise SubmissionError(*where, f"qid {qid!r}: pred_relevant_windows must be a list, got {raw!r}")
        windows: list[Window] = []
        for k, w in enumerate(raw):
            if not isinstance(w, list | tuple) or len(w) != 3:
                raise SubmissionError(
                    *where, f"qid {qid!r}: window {k} must be [start, end, score], got {w!r}"
                )
            start, end, score = (_finite(v, where, f"qid {qid!r}: window {k}") for v in w)
            if end < start:
                raise SubmissionError(*where, f"qid {qid!r}: window {k} {w!r} ends before it starts")
            windows.append((start, end, score))
        saliency: tuple[float, ...] | None = None
        if record.get("pred_saliency_scores") is not None:
            sal = record["pred_saliency_scores"]
            if not isinstance(sal, list) or not sal:
                raise SubmissionError(
                    *where, f"qid {qid!r}: pred_saliency_scores must be a non-empty list, got {sal!r}"
                )
            saliency = tuple(_finite(v, where, f"qid {qid!r}: saliency score") for v in sal)
        vid, query = record.get("vid"), record.get("query")
        return cls(
            qid=qid,
            windows=tuple(windows),
            saliency=saliency,
            vid=None if vid is None else str(vid),
            query=None if query is None else str(query),
        )


def _finite(value: Any, where: tuple[str, int], what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SubmissionError(*where, f"{what} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise SubmissionError(*where, f"{what} must be finite, got {value!r}")
    return x


def read_submission(path: str | os.PathLike[str]) -> list[Prediction]:
    """Read a submission jsonl file (blank lines skipped; a missing final newline is fine).

    Raises:
        SubmissionError: invalid JSON, a missing or malformed field, or a duplicate qid; the message
            names the file and line.
        ValueError: the file holds no predictions.
    """
    path = Path(path)
    preds: list[Prediction] = []
    seen: dict[QueryId, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            where = (str(path), lineno)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise SubmissionError(*where, f"invalid JSON ({e.msg} at column {e.colno})") from None
            pred = Prediction.from_dict(record, where)
            if pred.qid in seen:
                raise SubmissionError(*where, f"duplicate qid {pred.qid!r} (first on line {seen[pred.qid]})")
            seen[pred.qid] = lineno
            preds.append(pred)
    if not preds:
        raise ValueError(f"{path}: no predictions found")
    unsorted = sum(
        1 for p in preds if any(a[2] < b[2] for a, b in zip(p.windows, p.windows[1:], strict=False))
    )
    if unsorted:
        log.warning(
            "%s: %d of %d predictions list windows not sorted by score; scoring follows the file order "
            "as the standard tool does (R1 uses the first window, mAP the first 10)",
            path,
            unsorted,
            len(preds),
        )
    return preds


def write_submission(path: str | os.PathLike[str], predictions: Iterable[Prediction]) -> Path:
    """Write predictions as jsonl, atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(p.to_dict()) + "\n")
    os.replace(tmp, path)
    return path
