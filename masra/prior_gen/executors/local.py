"""The local executor: one process, one engine, the next batch decoded in threads while it runs."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from masra.prior_gen.engines.base import Engine
from masra.prior_gen.generator import Prepared, PriorGenerator
from masra.prior_gen.runs import VideoItem
from masra.prior_gen.sink import ShardSink


class LocalExecutor:
    """Batches of ``generator.cfg.batch_videos`` videos, ``decode_workers`` threads decoding ahead."""

    name = "local"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def run(
        self,
        todo: list[VideoItem],
        generator: PriorGenerator,
        engine_factory: Callable[[], Engine],
        sink: ShardSink,
    ) -> None:
        """Load the engine, then decode, generate and write batch after batch (one shard each)."""
        cfg = generator.cfg
        batches = [todo[i : i + cfg.batch_videos] for i in range(0, len(todo), cfg.batch_videos)]
        if not batches:
            return
        engine = engine_factory()
        sink.note_engine(engine)
        try:
            with ThreadPoolExecutor(cfg.decode_workers) as pool:

                def submit(b: list[VideoItem]) -> list[Future[Prepared]]:
                    return [pool.submit(generator.prepare, it) for it in b]

                pending = submit(batches[0])
                for k in range(len(batches)):
                    prepared = [f.result() for f in pending]
                    if k + 1 < len(batches):
                        pending = submit(batches[k + 1])  # decode the next batch while the engine runs
                    sink.write(generator.answer(prepared, engine))
        finally:
            engine.close()
