"""The engine interface: a batch of multimodal requests in, one text result per request out.

Engines know nothing of datasets, priors or parsing. A request carries a fully rendered prompt (the
model family's chat format with its video placeholder, see :mod:`masra.prior_gen.prompts`), the
video frames, an optional JSON schema for structured output, and a token limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings shared by all engines (greedy by default, so runs are reproducible)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    repetition_penalty: float = 1.05

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


@dataclass
class GenRequest:
    """One generation request.

    Attributes:
        key: caller's identifier, returned unchanged (e.g. ``("vid", "events", -1)``).
        prompt: the rendered prompt text with exactly one video placeholder.
        frames: (T, H, W, 3) uint8 RGB frames, T even.
        times: (T,) seconds of each frame in the source video.
        max_tokens: output token limit.
        json_schema: JSON schema for structured output, or None for free text.
        chat: the (system, user) texts ``prompt`` was rendered from, for backends that build their
            own messages (the OpenAI chat-completions backend); None when not known.
    """

    key: tuple[Any, ...]
    prompt: str
    frames: np.ndarray
    times: np.ndarray
    max_tokens: int
    json_schema: dict[str, Any] | None = None
    chat: tuple[str, str] | None = None

    @property
    def fps(self) -> float:
        """Mean sampling rate of ``frames`` (frames per second of video time)."""
        if len(self.times) < 2:
            return 1.0
        span = float(self.times[-1] - self.times[0])
        return (len(self.times) - 1) / span if span > 0 else 1.0


@dataclass
class GenResult:
    """The output of one request: text, token counts, whether it hit ``max_tokens``, or an error."""

    key: tuple[Any, ...]
    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    truncated: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """A loaded MLLM. ``generate`` returns results in request order and never raises for one bad
    request (it sets ``GenResult.error`` instead); it may raise for engine-wide failures."""

    backend: str
    model_id: str
    model_revision: str

    def generate(self, requests: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]: ...

    def close(self) -> None: ...


BACKENDS = ("vllm", "transformers", "openai")


@dataclass(frozen=True)
class EngineConfig:
    """How to load the MLLM.

    Attributes:
        model: local folder or hub id.
        backend: ``vllm`` or ``transformers``.
        revision: hub revision (branch, tag or commit); None for a local folder.
        trust_remote_code: allow model code from the hub; off unless asked for.
        dtype: ``auto``, ``bfloat16``, ``float16`` or ``float32``.
        device: transformers backend only: ``auto`` (cuda when available), ``cpu`` or ``cuda``.
        tensor_parallel_size: vLLM: GPUs per engine (shards the weights).
        gpu_memory_utilization: vLLM: fraction of GPU memory for weights + KV cache.
        max_model_len: vLLM: context length to reserve (prompt + output tokens).
        max_num_seqs: vLLM: maximum concurrent sequences.
        mm_processor_kwargs: passed to the model's multimodal processor (e.g. ``max_pixels``).
        enforce_eager: vLLM: skip CUDA graph capture (faster start, slower decode).
        batch_size: transformers: requests per ``generate`` call (static, left-padded batches).
        vllm_options: further keyword arguments for ``vllm.LLM`` (e.g. ``skip_mm_profiling``,
            ``enable_prefix_caching``, ``max_num_batched_tokens``); they override the ones above.
        base_url: openai: the server's API root (``http://host:8000/v1``); ``model`` is the name
            the server knows the model by.
        api_key_env: openai: environment variable holding the API key (None: no key sent).
        max_concurrency: openai: requests in flight at once.
        request_timeout: openai: seconds to wait for one reply.
        max_retries: openai: retries of a request after HTTP 429/5xx, a refused connection or a
            timeout, with exponential backoff from ``retry_backoff`` seconds.
        json_schema: openai: send the JSON schema as ``response_format`` (off for servers without
            structured output).
    """

    model: str
    backend: str = "transformers"
    revision: str | None = None
    trust_remote_code: bool = False
    dtype: str = "auto"
    device: str = "auto"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 16384
    max_num_seqs: int = 64
    mm_processor_kwargs: dict[str, Any] = field(default_factory=dict)
    enforce_eager: bool = False
    batch_size: int = 8
    vllm_options: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: int = 8
    request_timeout: float = 120.0
    max_retries: int = 5
    retry_backoff: float = 1.0
    json_schema: bool = True

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must be a model folder or hub id")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ValueError(f"dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_model_len < 256 or self.max_num_seqs < 1:
            raise ValueError("max_model_len must be >= 256 and max_num_seqs >= 1")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("the openai backend needs base_url (--base-url http://host:port/v1)")
        if (
            self.max_concurrency < 1
            or self.request_timeout <= 0
            or self.max_retries < 0
            or self.retry_backoff < 0
        ):
            raise ValueError(
                "max_concurrency >= 1, request_timeout > 0, max_retries >= 0, retry_backoff >= 0"
            )


def describe_revision(model: str, revision: str | None) -> str:
    """Provenance of the weights: for a local folder ``local-<12 hex>`` (a hash of its config and
    weights index); for a hub id the commit of the locally cached snapshot, else the requested
    revision, else ``unknown``."""
    import hashlib
    from pathlib import Path

    folder = Path(model)
    if folder.is_dir():
        h = hashlib.sha256()
        for name in ("config.json", "model.safetensors.index.json", "model.safetensors"):
            p = folder / name
            if p.is_file():
                h.update(name.encode())
                h.update(p.read_bytes() if p.stat().st_size < 64 << 20 else str(p.stat().st_size).encode())
        return f"local-{h.hexdigest()[:12]}"
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, revision=revision, local_files_only=True)).name
    except Exception:  # not cached, or not a hub id: keep what was asked for
        return revision or "unknown"
