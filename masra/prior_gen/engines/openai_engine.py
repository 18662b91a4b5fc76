"""The ``openai`` backend: a served MLLM behind the OpenAI chat-completions protocol.

Works with ``vllm serve``, SGLang and hosted APIs that accept images in chat messages. Each request
becomes one ``POST {base_url}/chat/completions``: the system text, then the user turn with one
``image_url`` part per frame (JPEG as a base64 data URL, each preceded by its time in the video as
``<t.t seconds>``, since images carry no timestamps) and the request's text; ``max_tokens``, greedy
settings, and the JSON schema as ``response_format`` (``json_schema``) unless turned off.

At most ``max_concurrency`` requests are in flight (threads). Transient failures (HTTP 429 and 5xx,
refused or reset connections, timeouts after ``request_timeout`` s) are retried up to
``max_retries`` times with exponential backoff (``Retry-After`` honoured); when retries run out the
engine raises :class:`ServerUnavailableError`, which stops the run like any engine-wide failure: the
batch in flight is lost, and a rerun resumes. A reply that is refused for this request only (HTTP
400/413/422) or that is not a chat completion becomes that request's ``GenResult.error``; an
unusable server (authentication refused, unknown model, nothing listening at start) raises at once.
Only the standard library speaks HTTP here.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from typing import Any

import numpy as np

from masra.prior_gen.engines.base import (
    EngineConfig,
    GenRequest,
    GenResult,
    SamplingConfig,
    describe_revision,
)

log = logging.getLogger(__name__)

__all__ = ["OpenAIEngine", "ServerUnavailableError", "chat_body"]

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REQUEST_STATUS = frozenset({400, 413, 422})  # this request is refused; others may pass
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_BACKOFF_S = 30.0


class ServerUnavailableError(RuntimeError):
    """The server cannot be used (down, refusing us, or failing past the retries)."""


class _Transient(Exception):
    """A failure worth retrying; ``wait`` is the server's ``Retry-After`` in seconds, if given."""

    def __init__(self, what: str, wait: float | None = None) -> None:
        super().__init__(what)
        self.wait = wait


def jpeg_data_url(frame: np.ndarray, quality: int = 90) -> str:
    """A (H, W, 3) uint8 RGB frame as a ``data:image/jpeg;base64,...`` URL."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_body(
    req: GenRequest, sampling: SamplingConfig, model: str, *, json_schema: bool = True, extra: bool = True
) -> dict[str, Any]:
    """The chat-completions request body of one request (see the module docstring).

    ``extra`` adds ``repetition_penalty`` (vLLM and SGLang accept it; hosted APIs may not).
    """
    if req.chat is None:
        raise ValueError(f"request {req.key} has no (system, user) texts for a chat message")
    system, user = req.chat
    parts: list[dict[str, Any]] = []
    for frame, t in zip(req.frames, req.times, strict=True):
        parts.append({"type": "text", "text": f"<{float(t):.1f} seconds>"})
        parts.append({"type": "image_url", "image_url": {"url": jpeg_data_url(frame)}})
    parts.append({"type": "text", "text": user})
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": parts}],
        "max_tokens": req.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
    }
    if extra and sampling.repetition_penalty != 1.0:
        body["repetition_penalty"] = sampling.repetition_penalty
    if json_schema and req.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": str(req.key[1]), "schema": req.json_schema},
        }
    return body


class OpenAIEngine:
    """A client of an OpenAI-compatible server (see the module docstring)."""

    backend = "openai"

    def __init__(self, cfg: EngineConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if not cfg.base_url:
            raise ValueError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self.model_id = cfg.model
        self.model_revision = (
            describe_revision(cfg.model, cfg.revision) if os.path.isdir(cfg.model) else "served"
        )
        self._sleep = sleep
        self._key: str | None = None
        if cfg.api_key_env:
            self._key = os.environ.get(cfg.api_key_env)
            if not self._key:
                raise ValueError(f"--api-key-env {cfg.api_key_env}: that environment variable is not set")
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)
        self._check_server()
        self._pool = ThreadPoolExecutor(cfg.max_concurrency, thread_name_prefix="openai")
        log.info(
            "openai backend: %s at %s, %d concurrent requests", cfg.model, self.base_url, cfg.max_concurrency
        )

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self._key:
            h["Authorization"] = f"Bearer {self._key}"
        return h

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One HTTP exchange -> the decoded JSON reply. Raises ``_Transient``, ``urllib.error.HTTPError``
        (non-retryable status) or ``ValueError`` (a reply that is not JSON)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=data, headers=self._headers(), method=method
        )
        try:
            with self._opener.open(request, timeout=self.cfg.request_timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            if e.code in RETRY_STATUS:
                after = e.headers.get("Retry-After") if e.headers else None
                wait = float(after) if after and after.replace(".", "", 1).isdigit() else None
                raise _Transient(f"HTTP {e.code}", wait) from None
            raise
        except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException, OSError) as e:
            reason = getattr(e, "reason", e)
            raise _Transient(f"{type(e).__name__}: {reason}") from None
        return json.loads(raw)

    def _with_retries(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return self._call(method, path, body)
            except _Transient as e:
                if attempt == self.cfg.max_retries:
                    raise ServerUnavailableError(
                        f"{self.base_url}{path}: {e} after {attempt + 1} attempts; is the server running "
                        "and reachable? (the run stops; rerun to resume)"
                    ) from None
                delay = e.wait if e.wait is not None else self.cfg.retry_backoff * 2**attempt
                delay = min(delay, _MAX_BACKOFF_S) * (1 + 0.25 * random.random())
                log.warning("%s%s: %s; retry %d in %.1f s", self.base_url, path, e, attempt + 1, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _check_server(self) -> None:
        """Fail early and clearly when nothing answers at ``base_url`` or the model is not served."""
        try:
            reply = self._call("GET", "/models")
        except _Transient as e:
            raise ServerUnavailableError(
                f"no OpenAI-compatible server answers at {self.base_url} ({e}); start it (e.g. `vllm serve "
                f"{self.cfg.model}`) or fix --base-url"
            ) from None
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise ServerUnavailableError(f"{self.base_url}: HTTP {e.code}; check --api-key-env") from None
            return  # some servers do not list models; the first request will tell
        except ValueError:
            return
        served = [m.get("id") for m in reply.get("data", [])] if isinstance(reply, dict) else []
        if served and self.cfg.model not in served:
            raise ServerUnavailableError(
                f"{self.base_url} does not serve model {self.cfg.model!r}; it serves {served} (pass --model)"
            )

    def _one(self, req: GenRequest, sampling: SamplingConfig) -> GenResult:
        body = chat_body(req, sampling, self.cfg.model, json_schema=self.cfg.json_schema)
        try:
            reply = self._with_retries("POST", "/chat/completions", body)
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace") if e.fp is not None else ""
            if e.code in REQUEST_STATUS:
                return GenResult(req.key, error=f"HTTP {e.code}: {detail}".strip())
            raise ServerUnavailableError(
                f"{self.base_url}/chat/completions: HTTP {e.code} {detail}"
            ) from None
        except ValueError:
            return GenResult(req.key, error="reply is not JSON")
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] or ""
            usage = reply.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            return GenResult(req.key, error="reply is not a chat completion")
        return GenResult(
            req.key,
            text=text,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            truncated=choice.get("finish_reason") == "length",
        )

    def generate(self, requests: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        """All requests, at most ``max_concurrency`` at once; results in request order."""
        return list(self._pool.map(lambda r: self._one(r, sampling), requests))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
