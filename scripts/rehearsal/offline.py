"""What the raw-input steps need that may not be on this machine: the card's extractors' weights and
the text encoder of its query features.

With the default (reduced) widths both ``masra predict`` steps run offline: the fixture's hand-crafted
extractors need no weights and MiniLM ships as a package. With ``--real-widths`` the card names
SlowFast R50 (a ``.pyth`` file from PyTorchVideo's model zoo), CLIP ViT-B/32's image tower and, for
512-d query features, CLIP's text tower (``openai/clip-vit-base-patch32``); none is downloaded here,
so those steps are skipped with the reason unless the weights are found (a file, a folder, or the
local Hugging Face cache), e.g. given with ``--extractor-model slowfast=PATH`` / ``--text-encoder``.
"""

from __future__ import annotations

from pathlib import Path

from masra.datasets.card import DatasetCard
from masra.features.registry import extractor_spec
from masra.features.text import card_text_encoder
from masra.hub import ModelUnavailableError, resolve_model
from masra.text_encoder import MINILM


def text_blocker(card: DatasetCard) -> str | None:
    """Why raw-text queries cannot be encoded here (None: they can)."""
    enc = card_text_encoder(card)
    if enc == MINILM:
        return None
    try:
        resolve_model(enc, what=f"text encoder of the {card.text_features.dim}-d query features")
    except ModelUnavailableError as e:
        return " ".join(str(e).split())
    return None


def video_blocker(card: DatasetCard) -> str | None:
    """Why features cannot be extracted from a video file here (None: they can)."""
    reasons = []
    for src in card.video_features:
        if src.extractor is None:
            reasons.append(f"feature type {src.name!r} names no extractor")
            continue
        spec = extractor_spec(src.extractor)
        ref = src.model or spec.default_model
        if ref is None or spec.weights == "none":
            continue
        if spec.weights == "file":
            if not (Path(ref).expanduser().exists() or (card.root / ref).exists()):
                reasons.append(f"{src.extractor} weights {ref!r} not found ({spec.where})")
            continue
        try:
            resolve_model(ref, what=f"model of extractor {src.extractor}")
        except ModelUnavailableError as e:
            reasons.append(" ".join(str(e).split()))
    return "; ".join(reasons) or None
