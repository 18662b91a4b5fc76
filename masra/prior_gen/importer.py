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
* ``clip_captions``: a list of strings. The run's clip grid has ``kept_clips(duration, clip_len,
  max_clips)`` clips (``masra.datasets.grid``: the duration's ceil in clips, cut at ``max_clips``); a
  list of another length is refitted to it by nearest-neighbour resampling in time (clip ``i`` takes
  the caption whose equal share of ``[0, duration)`` holds the clip's centre) and reported as a
  warning. An empty list cannot be refitted and refuses the row.

Valid rows become one :data:`~masra.priors.schema.PRIOR_SCHEMA` shard
``part-000of001-00000.parquet`` (the name ``masra priors generate`` gives a one-part run's first
shard) with ``source="imported"``, status ``ok``, backend and prompt version ``import``, written
atomically, plus ``manifest.json`` with the counts. Rows keep the file's order and events theirs.
The output is byte-identical for the same input and ``created_at``.

Reading and validation live in :mod:`masra.prior_gen.import_parse`; this module writes the run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.prior_gen.import_parse import (
    ImportedVideo,
    ParsedImport,
    check_grid,
    check_video_id,
    parse_import_file,
    refit_captions,
)
from masra.prior_gen.runs import ShardSpec
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
    """Remove what an earlier run left in ``run``: prior shards, manifests, report, embeddings and
    stage 2's encoded event texts (pseudo-queries)."""
    for p in shard_paths(run):
        p.unlink()
    for p in [*run.glob("manifest*.json"), run / "report.json"]:
        p.unlink(missing_ok=True)
    for folder in (PriorRun.at(run).embeddings, PriorRun.at(run).pseudo_queries):
        if folder.is_dir():
            shutil.rmtree(folder)


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
    check_grid(clip_len, max_clips)
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
