"""The transformers backend: ``AutoModelForImageTextToText`` + ``AutoProcessor``; runs on CPU.

This is the fallback for machines without vLLM or without a GPU, and what the CPU tests run. It
generates one request at a time (no continuous batching) and has no constrained decoding: the JSON
schema is not enforced, only asked for in the prompt, so the parser's validation does all the work.
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

    def _one(self, req: GenRequest, sampling: SamplingConfig) -> GenResult:
        import torch

        inputs = self.processor(
            text=[req.prompt],
            videos=[req.frames],
            return_tensors="pt",
            videos_kwargs={"fps": req.fps, "do_sample_frames": False},
        ).to(self.device)
        n_in = int(inputs["input_ids"].shape[1])
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": req.max_tokens,
            "repetition_penalty": sampling.repetition_penalty,
            "pad_token_id": self.processor.tokenizer.pad_token_id,
        }
        if sampling.temperature > 0:
            torch.manual_seed(sampling.seed)
            gen_kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            gen_kwargs.update(do_sample=False)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen_kwargs)  # (1, n_in + n_out)
        new = out[0, n_in:].tolist()
        ended = False
        for i, tid in enumerate(new):
            if tid in self.eos_ids:
                new, ended = new[:i], True
                break
        text = self.processor.tokenizer.decode(new, skip_special_tokens=True)
        return GenResult(
            req.key,
            text=text,
            tokens_in=n_in,
            tokens_out=len(new),
            truncated=not ended and len(new) >= req.max_tokens,
        )

    def generate(self, requests: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        """Generate each request in turn; a failing request gets ``error`` set, the rest go on."""
        results = []
        for req in requests:
            try:
                results.append(self._one(req, sampling))
            except (RuntimeError, ValueError) as e:
                log.warning("generation failed for %s: %s", req.key, e)
                results.append(GenResult(req.key, error=f"generation failed: {e}"))
        return results

    def close(self) -> None:
        del self.model
