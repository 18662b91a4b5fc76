"""What a run did: the per-invocation summary and the cumulative ``manifest-{i}of{N}.json`` of a part.

The manifest is rewritten by every invocation from the shards present (never from memory), so it
stays true after killed runs, reruns and reshardings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from masra.prior_gen.parsing import FAILED
from masra.prior_gen.runs import ShardSpec, reason_kind
from masra.priors.schema import SCHEMA_VERSION, STATUSES
from masra.priors.shards import shard_paths

__all__ = ["RunSummary", "row_totals", "write_manifest"]


@dataclass
class RunSummary:
    """What one invocation did (also its entry in the manifest's `invocations`)."""

    run_dir: str
    shard: str
    videos_total: int = 0
    videos_skipped: int = 0
    videos_done: int = 0
    videos_generated: int = 0  # done videos that reached the model (token means are over these)
    status_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    failure_reasons: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    wall_s: float = 0.0
    shards_written: list[str] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        """Count one written row."""
        self.videos_done += 1
        self.status_counts[row["status"]] += 1
        self.videos_generated += int(row["tokens_in"] > 0)
        self.tokens_in += row["tokens_in"]
        self.tokens_out += row["tokens_out"]
        if row["status"] == FAILED:
            reason = reason_kind(row["error"] or "")
            self.failure_reasons[reason] = self.failure_reasons.get(reason, 0) + 1

    def line(self) -> str:
        n = max(self.videos_generated, 1)
        c = self.status_counts
        return (
            f"{self.videos_done} videos ({self.videos_skipped} already done): ok {c['ok']}, partial "
            f"{c['partial']}, failed {c['failed']}; mean tokens in {self.tokens_in / n:.0f}, out "
            f"{self.tokens_out / n:.0f}; wall {self.wall_s:.1f} s ({self.videos_done / max(self.wall_s, 1e-9):.2f} videos/s)"
        )


def row_totals(run_dir: Path, shard: ShardSpec | None) -> dict[str, Any]:
    """Counts over the rows of the complete shards of ``run_dir`` (of one part, or of all)."""
    cols = ["video_id", "status", "error", "model_id", "model_revision", "backend", "tokens_in", "tokens_out"]
    paths = [p for p in shard_paths(run_dir) if shard is None or p.name.startswith(f"part-{shard.tag}-")]
    status_counts = dict.fromkeys(STATUSES, 0)
    reasons: dict[str, int] = {}
    models: dict[str, int] = {}
    ids: set[str] = set()
    rows = tokens_in = tokens_out = 0
    last: dict[str, Any] = {}
    for p in paths:
        t = pq.read_table(p, columns=[c for c in cols if c in pq.read_schema(p).names])
        for r in t.to_pylist():
            rows += 1
            ids.add(r["video_id"])
            status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
            if r["status"] == FAILED:
                reason = reason_kind(r.get("error") or "")
                reasons[reason] = reasons.get(reason, 0) + 1
            model = r.get("model_id") or "unknown"
            models[model] = models.get(model, 0) + 1
            tokens_in += r.get("tokens_in") or 0
            tokens_out += r.get("tokens_out") or 0
            last = r
    return {
        "rows": rows,
        "videos": len(ids),
        "ids": ids,
        "status_counts": status_counts,
        "failure_reasons": reasons,
        "model_ids": models,
        "model_id": last.get("model_id"),
        "model_revision": last.get("model_revision"),
        "backend": last.get("backend"),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "shards": [p.name for p in paths],
    }


def write_manifest(
    run_dir: Path,
    shard: ShardSpec,
    part_ids: list[str],
    settings: dict[str, Any],
    invocation: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rewrite ``manifest-{part}.json`` from the shards present, appending ``invocation``.

    ``settings`` are the generator's (prompt version and family, config). Totals
    (``videos_done``, ``status_counts``, ``failure_reasons``, tokens, ``model_id``) are over the
    rows of this part's shards; ``run_totals`` over all shards of the folder. ``complete`` is true
    only when every video of the part (``part_ids``: the part of the whole split list, not of a
    ``--limit``) has a row in some shard of the folder (a folder resharded between runs keeps rows
    of its videos under other parts' names). ``executor`` is the last invocation's executor.
    ``invocations`` keeps every invocation's arguments, times and rows written (older manifests'
    bodies are kept as their first invocation).
    """
    path = run_dir / f"manifest-{shard.tag}.json"
    previous: list[dict[str, Any]] = []
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        previous = list(old.get("invocations") or [{k: v for k, v in old.items() if k != "config"}])
    except (OSError, ValueError, AttributeError):
        pass
    part = row_totals(run_dir, shard)
    run = row_totals(run_dir, None)
    part.pop("ids")
    run_ids: set[str] = run.pop("ids")
    missing = [v for v in part_ids if v not in run_ids]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        **settings,
        **(extra or {}),
        "run_dir": str(run_dir),
        "shard": shard.tag,
        "executor": (invocation.get("executor") or {}).get("name", "local"),
        "finished_at": invocation.get("finished_at"),
        "videos_total": len(part_ids),
        "videos_done": len(part_ids) - len(missing),
        "videos_missing": len(missing),
        "missing_sample": missing[:20],
        "complete": not missing,
        **{k: part[k] for k in ("model_id", "model_revision", "backend", "model_ids")},
        "rows": part["rows"],
        "status_counts": part["status_counts"],
        "failure_reasons": part["failure_reasons"],
        "tokens_in": part["tokens_in"],
        "tokens_out": part["tokens_out"],
        "shards": part["shards"],
        "run_totals": {k: v for k, v in run.items() if k != "shards"} | {"shards": len(run["shards"])},
        "invocations": [*previous, invocation],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return manifest
