"""Import priors written elsewhere (a hosted MLLM, another cluster job, a paper's caption release).

Input: JSON lines, one video per line (empty lines are skipped)::

    {"vid": "v1", "duration": 30.0,
     "events": [{"start": 0.0, "end": 12.5, "text": "a man opens a door"}, ...],
     "clip_captions": ["a door", "a man walks in", ...]}

Each row is validated (reasons name ``file:line``, 1-based):

* a JSON object with the keys ``vid``, ``duration``, ``events``, ``clip_captions`` (others ignored);
* ``vid``: a non-empty string that is a plain file name (no ``/``, ``\\``, ``..``, drive, leading
  ``.``, leading/trailing white space, NUL or other control character), not seen on an earlier line;
* ``duration``: a finite number > 0 (seconds);
* ``events``: a list of objects with finite ``0 <= start < end <= duration`` and non-empty ``text``;
* ``clip_captions``: a list of strings. The run's clip grid has ``num_clips_for(duration, clip_len,
  max_clips)`` clips; a list of another length is refitted to it by nearest-neighbour resampling in
  time (clip ``i`` takes the caption whose equal share of ``[0, duration)`` holds the clip's centre)
  and reported as a warning. An empty list cannot be refitted and refuses the row.

Valid rows become one :data:`~masra.priors.schema.PRIOR_SCHEMA` shard
``part-000of001-00000.parquet`` (the name ``masra priors generate`` gives a one-part run's first
shard) with ``source="imported"``, status ``ok``, backend and prompt version ``import``, written
atomically, plus ``manifest.json`` with the counts. Rows keep the file's order and events theirs.
The output is byte-identical for the same input and ``created_at``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.datasets.ids import id_problem
from masra.prior_gen.runs import ShardSpec, num_clips_for
from masra.priors.run import PriorRun
from masra.priors.schema import PRIOR_SCHEMA, SCHEMA_VERSION
from masra.priors.shards import rows_to_table, shard_paths, write_table_atomic

__all__ = [
    "SHARD_NAME",
    "ImportReport",
    "ImportedVideo",
    "ParsedImport",
    "check_video_id",
    "import_priors",
    "parse_import_file",
    "refit_captions",
    "write_imported",
]

SOURCE = "imported"
SHARD_NAME = f"part-{ShardSpec().tag}-00000.parquet"
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


@dataclass(frozen=True)
class ImportReport:
    """Result of an import: row counts, the refused rows and refit warnings, where it was written.

    ``manifest`` is the content of ``{run_dir}/manifest.json``.
    """

    rows_read: int
    rows_written: int
    refused: list[str]
    refitted: list[str]
    run_dir: Path
    manifest: dict[str, Any]

    def line(self) -> str:
        """One-line summary."""
        return (
            f"imported {self.rows_written} of {self.rows_read} rows into {self.run_dir} "
            f"({len(self.refused)} refused, {len(self.refitted)} with refitted clip captions)"
        )


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
    num_clips = num_clips_for(duration, clip_len, max_clips if max_clips is not None else sys.maxsize)
    if max_clips is None and num_clips > MAX_UNCAPPED_CLIPS:
        raise _Bad(f"duration {duration:g} s needs {num_clips} clips, more than {MAX_UNCAPPED_CLIPS}")
    count = len(captions)
    if count != num_clips:
        if count == 0:
            raise _Bad(f"clip_captions is empty; the video has {num_clips} clips of {clip_len:g} s")
        captions = refit_captions(captions, num_clips, duration, clip_len)
    return ImportedVideo(vid, duration, num_clips, events, captions, line), count


def _check_grid(clip_len: float, max_clips: int | None) -> None:
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
    _check_grid(clip_len, max_clips)
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


def _timestamp(created_at: str | None) -> str:
    """``created_at`` checked as ISO-8601, or the current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    if created_at is None:
        return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        dt.datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"created_at must be an ISO-8601 timestamp, got {created_at!r}") from None
    return created_at


def _clear_run(run: Path) -> None:
    """Remove what an earlier run left in ``run``: prior shards, manifests, report, embeddings."""
    for p in shard_paths(run):
        p.unlink()
    for p in [*run.glob("manifest*.json"), run / "report.json"]:
        p.unlink(missing_ok=True)
    embeddings = PriorRun.at(run).embeddings
    if embeddings.is_dir():
        shutil.rmtree(embeddings)


def check_run_dir(run_dir: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """``run_dir`` as a Path; raise when it is not a folder or already holds shards (unless
    ``overwrite``)."""
    run = Path(run_dir)
    if run.exists() and not run.is_dir():
        raise NotADirectoryError(f"run folder {run} exists and is not a folder")
    existing = shard_paths(run) if run.is_dir() else []
    if existing and not overwrite:
        names = ", ".join(p.name for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise FileExistsError(
            f"run folder {run} already holds {len(existing)} prior shard(s) ({names}); "
            "choose another run name, or overwrite it (--overwrite)"
        )
    return run


def write_imported(
    parsed: ParsedImport,
    run_dir: str | os.PathLike[str],
    *,
    dataset: str,
    clip_len: float,
    max_clips: int | None = None,
    created_at: str | None = None,
    model_id: str = "imported",
    overwrite: bool = False,
) -> ImportReport:
    """Write the valid rows of ``parsed`` as a prior run in ``run_dir`` (shard + ``manifest.json``).

    With ``overwrite``, the folder's earlier shards, manifests, report and ``embeddings/`` are
    removed first (the embeddings would describe the old rows).

    Raises:
        ValueError: no valid row, bad ``created_at`` / ``model_id`` / ``dataset``.
        FileExistsError: ``run_dir`` holds shards and ``overwrite`` is False.
    """
    _check_grid(clip_len, max_clips)
    stamp = _timestamp(created_at)
    if not isinstance(model_id, str) or not model_id.strip():
        raise ValueError("model_id must be a non-empty string")
    if not isinstance(dataset, str) or not dataset:
        raise ValueError("dataset must be a non-empty string")
    if not parsed.videos:
        first = "; first: " + parsed.refused[0] if parsed.refused else ""
        raise ValueError(
            f"{parsed.file}: no valid rows to import ({parsed.rows_read} read, "
            f"{len(parsed.refused)} refused){first}"
        )
    run = check_run_dir(run_dir, overwrite)
    if run.is_dir():
        _clear_run(run)
    rows = [
        {
            "video_id": v.vid,
            "duration": v.duration,
            "clip_len": clip_len,
            "num_clips": v.num_clips,
            "events": v.events,
            "clip_captions": v.clip_captions,
            "status": "ok",
            "error": None,
            "source": SOURCE,
            "model_id": model_id,
            "model_revision": None,
            "backend": "import",
            "prompt_version": "import",
            "sampling": "{}",
            "frames_sampled": 0,
            "tokens_in": 0,
            "tokens_out": 0,
            "created_at": stamp,
            "schema_version": SCHEMA_VERSION,
        }
        for v in parsed.videos
    ]
    write_table_atomic(rows_to_table(rows, PRIOR_SCHEMA), run / SHARD_NAME)
    manifest = {
        "dataset": dataset,
        "run": run.name,
        "source": SOURCE,
        "model_id": model_id,
        "model_revision": None,
        "backend": "import",
        "prompt_version": "import",
        "schema_version": SCHEMA_VERSION,
        "created_at": stamp,
        "clip_len": clip_len,
        "max_clips": max_clips,
        "shards": [SHARD_NAME],
        "import": {
            "file": Path(parsed.file).name,
            "sha256": parsed.sha256,
            "rows_read": parsed.rows_read,
            "rows_refused": len(parsed.refused),
            "captions_refitted": len(parsed.refitted),
        },
        "counts": {
            "videos": len(rows),
            "ok": len(rows),
            "partial": 0,
            "failed": 0,
            "events": sum(len(v.events) for v in parsed.videos),
            "clip_captions": sum(v.num_clips for v in parsed.videos),
        },
    }
    tmp = run / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, PriorRun.at(run).manifest)
    return ImportReport(
        rows_read=parsed.rows_read,
        rows_written=len(rows),
        refused=list(parsed.refused),
        refitted=list(parsed.refitted),
        run_dir=run,
        manifest=manifest,
    )


def import_priors(
    source: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    dataset: str,
    clip_len: float,
    max_clips: int | None = None,
    created_at: str | None = None,
    model_id: str = "imported",
    overwrite: bool = False,
) -> ImportReport:
    """Import the JSON-lines prior file ``source`` as the prior run ``run_dir``.

    Valid rows are written; invalid ones are listed in ``ImportReport.refused`` and skipped (the
    caller decides whether a refusal is fatal: ``masra priors import`` writes nothing then unless
    ``--skip-bad``). ``clip_len`` / ``max_clips`` are the dataset's clip grid (``None``: no cap);
    ``created_at`` fixes the timestamp (``None``: now, UTC) so the output is byte-identical for the
    same input; ``model_id`` is recorded as the rows' ``model_id``.

    Raises:
        OSError: ``source`` cannot be read.
        FileExistsError: ``run_dir`` holds shards and ``overwrite`` is False (checked before reading).
        ValueError: no valid row, or a bad argument.
    """
    check_run_dir(run_dir, overwrite)
    _timestamp(created_at)
    parsed = parse_import_file(source, clip_len=clip_len, max_clips=max_clips)
    return write_imported(
        parsed,
        run_dir,
        dataset=dataset,
        clip_len=clip_len,
        max_clips=max_clips,
        created_at=created_at,
        model_id=model_id,
        overwrite=overwrite,
    )
