"""The transformers backend: ``AutoModelForImageTextToText`` + ``AutoProcessor``; runs on CPU.

This is the fallback for machines without vLLM or without a GPU, and what the CPU tests run. It
generates static, left-padded batches of requests with equal token limits (no continuous
batching) and has no constrained decoding: the JSON schema is not enforced, only asked for in the
prompt, so the parser's validation does all the work.
``trust_remote_code`` is off unless the config asks for it.
"""

from __future__ import annotations

import logging
from typing import Any

from masra.prior_gen.engines.base import (
    EngineConfig,
    GenRequest,
    GenResult,
    SamplingConfig,
    describe_revision,
)

log = logging.getLogger(__name__)

_DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def video_metadata(req: GenRequest) -> dict[str, Any]:
    """The request's frames described as a clip sampled at ``req.fps``: Qwen2.5-VL derives its time
    encoding (``second_per_grid_ts``) from it and Qwen3-VL its frame timestamps (relative to the
    first frame), the same description the vLLM backend passes."""
    n = len(req.frames)
    return {"fps": req.fps, "total_num_frames": n, "frames_indices": list(range(n)), "duration": n / req.fps}


class TransformersEngine:
    """A transformers image/video-text-to-text model (see the module docstring)."""

    backend = "transformers"

    def __init__(self, cfg: EngineConfig) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg = cfg
        self.model_id = cfg.model
        self.model_revision = describe_revision(cfg.model, cfg.revision)
        if cfg.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
        if cfg.dtype == "auto":
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            dtype = getattr(torch, _DTYPES[cfg.dtype])
        log.info("loading %s with transformers on %s (%s)", cfg.model, self.device, dtype)
        common: dict[str, Any] = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
        self.processor = AutoProcessor.from_pretrained(cfg.model, **common, **cfg.mm_processor_kwargs)
        model: Any = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=dtype, **common)
        self.model: Any = model.to(self.device).eval()
        tok = self.processor.tokenizer
        self.eos_ids = {i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None}
        gen_eos = self.model.generation_config.eos_token_id
        self.eos_ids |= set(
            gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else []
        )

    def _batch(self, reqs: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        """Generate a batch of requests with the same ``max_tokens`` and fps (left-padded prompts)."""
        import torch

        tok = self.processor.tokenizer
        tok.padding_side = "left"
        inputs = self.processor(
            text=[r.prompt for r in reqs],
            videos=[r.frames for r in reqs],
            return_tensors="pt",
            padding=True,
            videos_kwargs={"video_metadata": [video_metadata(r) for r in reqs], "do_sample_frames": False},
        ).to(self.device)
        n_pad = int(inputs["input_ids"].shape[1])
        n_in = inputs["attention_mask"].sum(dim=1).tolist()  # (B,) real prompt tokens
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": reqs[0].max_tokens,
            "repetition_penalty": sampling.repetition_penalty,
            "pad_token_id": tok.pad_token_id,
        }
        if sampling.temperature > 0:
            torch.manual_seed(sampling.seed)
            gen_kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            gen_kwargs.update(do_sample=False)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen_kwargs)  # (B, n_pad + n_out)
        results = []
        for b, req in enumerate(reqs):
            new = out[b, n_pad:].tolist()
            ended = False
            for i, tid in enumerate(new):
                if tid in self.eos_ids:
                    new, ended = new[:i], True
                    break
            results.append(
                GenResult(
                    req.key,
                    text=tok.decode(new, skip_special_tokens=True),
                    tokens_in=int(n_in[b]),
                    tokens_out=len(new),
                    truncated=not ended and len(new) >= req.max_tokens,
                )
            )
        return results

    def generate(self, requests: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        """Generate in batches of ``cfg.batch_size`` requests with equal token limits and fps; when a batch
        fails its requests are retried one by one, and a failing request gets ``error`` set."""
        results: dict[int, GenResult] = {}
        groups: dict[tuple[int, float], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.max_tokens, round(r.fps, 3)), []).append(i)
        for idx in groups.values():
            for k in range(0, len(idx), self.cfg.batch_size):
                chunk = idx[k : k + self.cfg.batch_size]
                try:
                    results.update(
                        zip(chunk, self._batch([requests[i] for i in chunk], sampling), strict=True)
                    )
                    continue
                except Exception as e:  # one bad request must not end the run
                    if len(chunk) == 1:
                        log.warning("generation failed for %s: %s", requests[chunk[0]].key, e)
                        results[chunk[0]] = GenResult(requests[chunk[0]].key, error=f"generation failed: {e}")
                        continue
                    log.warning("batch of %d failed (%s); retrying one by one", len(chunk), e)
                for i in chunk:
                    try:
                        results[i] = self._batch([requests[i]], sampling)[0]
                    except Exception as e:  # one bad request must not end the run
                        log.warning("generation failed for %s: %s", requests[i].key, e)
                        results[i] = GenResult(requests[i].key, error=f"generation failed: {e}")
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        del self.model
