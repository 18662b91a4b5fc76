"""Executors: how stage 1 spreads decoding and generation over threads, processes or a Ray cluster.

Every executor gets the videos still to do, the :class:`~masra.prior_gen.generator.PriorGenerator`
(per-video work), an engine factory and a :class:`~masra.prior_gen.sink.ShardSink`, and hands the
sink batches of rows. Locking, resume, the manifest and the summary stay in
:func:`masra.prior_gen.generate.generate_priors`, so all executors write the same shards.

- ``local`` (:mod:`.local`): one process, one engine, decoding threads ahead of it (the default).
- ``ray`` (:mod:`.ray_executor`): a Ray Data pipeline, decode tasks on the cluster's CPUs and an
  actor pool of engines; needs the ``ray`` extra (``pip install "masra[ray]"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from masra.prior_gen.engines.base import Engine
from masra.prior_gen.generator import PriorGenerator
from masra.prior_gen.runs import VideoItem
from masra.prior_gen.sink import ShardSink

__all__ = ["Executor", "LocalExecutor"]


class Executor(Protocol):
    """Runs the generator and an engine over ``todo`` and writes every row through ``sink``."""

    name: str

    def describe(self) -> dict[str, Any]:
        """The executor's settings, recorded in the manifest (``name`` first)."""
        ...

    def run(
        self,
        todo: list[VideoItem],
        generator: PriorGenerator,
        engine_factory: Callable[[], Engine],
        sink: ShardSink,
    ) -> None: ...


from masra.prior_gen.executors.local import LocalExecutor  # noqa: E402
