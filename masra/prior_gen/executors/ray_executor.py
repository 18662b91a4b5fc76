"""The Ray executor: stage 1 as one streaming Ray Data pipeline over a cluster.

    videos still to do  ->  decode + sample + build requests    ->  generate + parse       ->  driver
    (one row per video)     (tasks, 1 CPU each, as many as the      (an actor pool of           (rows ->
                             cluster's CPUs allow)                   ``replicas`` engines,      ShardSink)
                                                                     ``tensor_parallel`` GPUs
                                                                     each when there are GPUs)

Decoding runs on every free CPU of the cluster while the engines generate, so a GPU never waits for
the decoder of its own process. The engine actors hold masra's own engine classes (vLLM,
transformers or the OpenAI client), built by the run's ``engine_factory`` on the worker:
``ray.data.llm`` (``vLLMEngineProcessorConfig`` + ``build_processor``) does not fit our requests,
which carry frames already sampled at exact times with their fps metadata, a pre-rendered
family prompt and one JSON schema per request, and it would tie the pipeline to vLLM alone.

Rows come back to the driver, which writes them through the same :class:`ShardSink` (atomic shards,
``PRIOR_SCHEMA``) as the local executor, so shards do not depend on the executor; the run folder
needs to be on the driver only, the videos must be readable at the same paths on every node.

Faults: Ray Data's defaults apply: a decode task whose process dies is retried (3 times), an engine
actor whose process dies is restarted and its batch redone (no limit). Rows already written are never
written again (the sink drops a repeated video), and a rerun skips every video with a row, so a
lost node costs at most the batches in flight.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masra.prior_gen.engines.base import Engine
from masra.prior_gen.generator import PriorGenerator
from masra.prior_gen.runs import VideoItem
from masra.prior_gen.sink import ShardSink

log = logging.getLogger(__name__)

__all__ = ["RayConfig", "RayExecutor"]


@dataclass(frozen=True)
class RayConfig:
    """How the pipeline uses the cluster.

    Attributes:
        address: Ray cluster address (``auto``, ``ray://head:10001``); None: the cluster this
            process is already connected to, else a new local one for this run.
        replicas: engine actors (``--data-parallel``).
        gpus_per_engine: GPUs reserved per engine actor; None: ``tensor_parallel`` when the cluster
            has GPUs, else 0.
        tensor_parallel: GPUs one engine spans (``--tensor-parallel``).
        engine_cpus: CPUs reserved per engine actor.
        decode_cpus: CPUs reserved per decode task (how many decode at once: free CPUs / this).
        decode_memory_mb: memory reserved per decode task (a 150 s video's frames and requests
            take ~70 MB at the defaults). Also keeps the decode stage a stage of its own: Ray Data
            fuses consecutive maps whose resource requests are equal, which would put decoding
            back inside the engine actors.
    """

    address: str | None = None
    replicas: int = 1
    gpus_per_engine: float | None = None
    tensor_parallel: int = 1
    engine_cpus: float = 1.0
    decode_cpus: float = 1.0
    decode_memory_mb: int = 512

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.tensor_parallel < 1:
            raise ValueError("replicas and tensor_parallel must be >= 1")
        if self.engine_cpus < 0 or self.decode_cpus <= 0 or self.decode_memory_mb < 1:
            raise ValueError("engine_cpus must be >= 0, decode_cpus > 0 and decode_memory_mb >= 1")
        if self.gpus_per_engine is not None and self.gpus_per_engine < 0:
            raise ValueError(f"gpus_per_engine must be >= 0, got {self.gpus_per_engine}")


def _decode(batch: dict[str, np.ndarray], generator: PriorGenerator) -> dict[str, np.ndarray]:
    """Decode stage: one prepared video (frames + requests, pickled) per input row."""
    out = []
    for vid, duration, path in zip(batch["vid"], batch["duration"], batch["path"], strict=True):
        item = VideoItem(str(vid), float(duration), Path(str(path)) if str(path) else None)
        out.append(pickle.dumps(generator.prepare(item), protocol=pickle.HIGHEST_PROTOCOL))
    return {"vid": batch["vid"], "prepared": np.array(out, dtype=object)}


class _EngineStage:
    """Generate stage: an actor holding one engine; a batch of prepared videos in, JSON rows out."""

    def __init__(self, generator: PriorGenerator, engine_factory: Callable[[], Engine]) -> None:
        self.generator = generator
        self.engine = engine_factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prepared = [pickle.loads(b) for b in batch["prepared"]]
        rows = self.generator.answer(prepared, self.engine)
        return {"vid": batch["vid"], "row": np.array([json.dumps(r) for r in rows], dtype=object)}


class RayExecutor:
    """Runs stage 1 on a Ray cluster (see the module docstring)."""

    name = "ray"

    def __init__(self, cfg: RayConfig | None = None) -> None:
        self.cfg = cfg or RayConfig()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self.cfg)}

    def run(
        self,
        todo: list[VideoItem],
        generator: PriorGenerator,
        engine_factory: Callable[[], Engine],
        sink: ShardSink,
    ) -> None:
        """Stream ``todo`` through the pipeline; the driver writes rows as they come."""
        if not todo:
            return
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                "--executor ray needs Ray Data: pip install 'masra[ray]' (or 'ray[data]')"
            ) from None
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.cfg.address, ignore_reinit_error=True, log_to_driver=False)
        try:
            for rows in self._stream(ray, todo, generator, engine_factory, generator.cfg.batch_videos):
                sink.write(rows)
        finally:
            if started:
                ray.shutdown()

    def _stream(
        self,
        ray: Any,
        todo: list[VideoItem],
        generator: PriorGenerator,
        engine_factory: Callable[[], Engine],
        shard_rows: int,
    ) -> Iterator[list[dict[str, Any]]]:
        """Batches of at most ``shard_rows`` finished rows, in the order the engines finish them."""
        cfg = self.cfg
        gpus = cfg.gpus_per_engine
        if gpus is None:
            gpus = float(cfg.tensor_parallel) if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        items = [{"vid": it.vid, "duration": it.duration, "path": str(it.path or "")} for it in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(
            _decode,
            fn_kwargs={"generator": generator},
            batch_size=1,
            batch_format="numpy",
            num_cpus=cfg.decode_cpus,
            memory=cfg.decode_memory_mb * 2**20,
        )
        ds = ds.map_batches(
            _EngineStage,
            fn_constructor_kwargs={"generator": generator, "engine_factory": engine_factory},
            batch_size=generator.cfg.batch_videos,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=cfg.replicas),
            num_cpus=cfg.engine_cpus,
            num_gpus=gpus,
        )
        log.info(
            "ray: %d videos, %d engine actor(s) (%g GPU, %g CPU each), decode tasks of %g CPU",
            len(items), cfg.replicas, gpus, cfg.engine_cpus, cfg.decode_cpus,
        )  # fmt: skip
        pending: list[dict[str, Any]] = []
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            pending += [json.loads(r) for r in batch["row"]]
            while len(pending) >= shard_rows:
                yield pending[:shard_rows]
                pending = pending[shard_rows:]
        if pending:
            yield pending
