"""The grounding model: baseline parts, MASRA parts (SGE, SORA, DAI) and their assembly."""

from masra.grounding.model.masra_model import SALIENCY_PAD, MasraModel, build_model

__all__ = ["SALIENCY_PAD", "MasraModel", "build_model"]
