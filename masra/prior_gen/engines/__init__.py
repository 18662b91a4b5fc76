"""MLLM engines for stage 1. Only :mod:`masra.prior_gen.engines.vllm_engine` imports vllm."""

from __future__ import annotations

import importlib.util
import logging

from masra.prior_gen.engines.base import BACKENDS, Engine, EngineConfig, GenRequest, GenResult, SamplingConfig

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "Engine",
    "EngineConfig",
    "GenRequest",
    "GenResult",
    "SamplingConfig",
    "default_backend",
    "load_engine",
]


def default_backend() -> str:
    """``vllm`` when the vllm package is installed and a CUDA GPU is visible, else ``transformers``."""
    import torch

    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        return "vllm"
    return "transformers"


def load_engine(cfg: EngineConfig) -> Engine:
    """Load the engine ``cfg.backend`` names (imports the backend lazily)."""
    if cfg.backend == "vllm":
        from masra.prior_gen.engines.vllm_engine import VllmEngine

        return VllmEngine(cfg)
    if cfg.backend == "openai":
        from masra.prior_gen.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(cfg)
    from masra.prior_gen.engines.transformers_engine import TransformersEngine

    return TransformersEngine(cfg)
