"""Build a tiny, randomly initialised CLIP vision model offline, for tests of raw-video input.

Writes ``{out}``: a ``CLIPVisionModelWithProjection`` of the real architecture (2 layers, hidden 32,
4 heads, 32x32 images in 8x8 patches, projection ``--dim``) and a ``CLIPImageProcessor`` config
resizing to 32x32. The ``clip-vit-b32`` extractor loads it (``model: {out}`` in a card, or
``load_extractor("clip-vit-b32", model=out)``) with ``HF_HUB_OFFLINE=1``. Its embeddings are
meaningless (random weights) but deterministic for a seed.

Usage: ``python scripts/build_tiny_clip.py --out data/generated/tiny_models/clip_vision [--dim 512]``
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("build_tiny_clip")


def build_tiny_clip(out: str | Path, dim: int = 512, seed: int = 0, image_size: int = 32) -> Path:
    """Write the tiny model and its processor into ``out`` (created); returns the folder."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=8,
        projection_dim=dim,
    )
    CLIPVisionModelWithProjection(config).eval().save_pretrained(out)
    CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    ).save_pretrained(out)
    log.info("tiny CLIP vision model (projection %d) written to %s", dim, out)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/generated/tiny_models/clip_vision", help="Output folder.")
    parser.add_argument("--dim", type=int, default=512, help="Projection (embedding) size.")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_tiny_clip(args.out, dim=args.dim, seed=args.seed)


if __name__ == "__main__":
    main()
