"""Where every executor's rows land: atomic shards of one part, counted, deduplicated, with progress.

Executors hand rows to a :class:`ShardSink` in batches; each batch becomes one shard
``part-{i:03d}of{N:03d}-{seq:05d}.parquet`` written by :func:`masra.priors.shards.write_table_atomic`
in :data:`~masra.priors.schema.PRIOR_SCHEMA`, so stage 2 cannot tell which executor wrote it. A
row whose video already has a row (in a complete shard present at start, or written by this sink)
is dropped with a warning: an executor that retries lost work (Ray re-running a task of a killed
worker) can never write a video twice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from masra.prior_gen.generator import EngineInfo
from masra.prior_gen.manifest import RunSummary
from masra.prior_gen.runs import ShardSpec, next_seq
from masra.priors.schema import PRIOR_SCHEMA
from masra.priors.shards import rows_to_table, write_table_atomic

log = logging.getLogger(__name__)

__all__ = ["ShardSink"]


class ShardSink:
    """Writes batches of rows as the shards of part ``shard`` of ``run_dir`` (see the module doc).

    Args:
        run_dir: the run folder.
        shard: the part being written (names the shard files).
        summary: counts of this invocation, updated per written row.
        done: ids that already have rows in the folder (skipped if they come again).
        total: rows expected (for the progress bar's ETA).
    """

    def __init__(
        self, run_dir: Path, shard: ShardSpec, summary: RunSummary, *, done: set[str], total: int
    ) -> None:
        self.run_dir = Path(run_dir)
        self.shard = shard
        self.summary = summary
        self.seen = set(done)
        self.seq = next_seq(self.run_dir, shard)
        self.engine: EngineInfo | None = None
        self.duplicates = 0
        self.bar = tqdm(total=total, unit="video", desc=f"priors {shard.tag}", dynamic_ncols=True)

    def note_engine(self, engine: Any) -> None:
        """Record who answers (the local executor calls this when it loads the engine)."""
        self.engine = EngineInfo.of(engine)

    def write(self, rows: list[dict[str, Any]]) -> Path | None:
        """Write ``rows`` (less videos that already have a row) as the next shard; None if none left."""
        fresh = []
        for row in rows:
            if row["video_id"] in self.seen:
                self.duplicates += 1
                log.warning("video %s already has a row; the repeated row is dropped", row["video_id"])
                continue
            self.seen.add(row["video_id"])
            fresh.append(row)
        if not fresh:
            return None
        path = write_table_atomic(
            rows_to_table(fresh, PRIOR_SCHEMA), self.run_dir / f"part-{self.shard.tag}-{self.seq:05d}.parquet"
        )
        self.seq += 1
        if self.engine is None:
            first = fresh[0]
            self.engine = EngineInfo(first["model_id"], first["model_revision"], first["backend"])
        self.summary.shards_written.append(path.name)
        for row in fresh:
            self.summary.add(row)
        c = self.summary.status_counts
        self.bar.update(len(fresh))
        self.bar.set_postfix(ok=c["ok"], failed=c["failed"])
        return path

    def close(self) -> None:
        self.bar.close()
