"""Build the tiny, randomly initialised test MLLM(s) offline, with no download.

Writes ``{out}/qwen2_5_vl`` (default) and, with ``--models qwen3_vl``, ``{out}/qwen3_vl``: models of
the real architectures (2 text layers, hidden 128, head_dim 64 so vLLM's CPU attention accepts it,
2 vision blocks; under 1 M parameters), a byte-level BPE tokenizer trained here on a small built-in
word list, the Qwen chat special tokens, a chat template, and image/video processor configs.
``transformers`` (``AutoModelForImageTextToText`` + ``AutoProcessor``) and vLLM load the folders
with ``HF_HUB_OFFLINE=1``.

Its output is garbage by construction (random weights); stage 1 must turn that into empty or partial
priors with a status. Usage: ``python scripts/build_tiny_models.py [--out data/generated/tiny_models]``
(``make tiny-models``). Rebuilding is deterministic for a given seed and skipped when the folder is
complete unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("build_tiny_models")

MARKER = "MASRA_TINY_MODEL.md"
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# A Qwen-style chat template: system/user/assistant turns; user content is a string or a list of
# {"type": "text"|"image"|"video"} parts; vision parts become <|vision_start|><|..._pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS_WORDS = (
    "the a an and of to in on at with from by for is are was were be been person man woman people "
    "child dog cat car ball kitchen room table door window street video clip scene camera shows "
    "walks runs sits stands talks opens closes picks puts holds looks turns cooks eats drinks plays "
    "start end description captions events time seconds red green blue yellow white black moving "
    "still slowly quickly then after before while again close far left right up down inside outside"
)


def _train_tokenizer(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE (full 256-byte alphabet) on a built-in corpus; return vocab, merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    words = CORPUS_WORDS.split()
    lines = [" ".join(words[i : i + 7]) for i in range(len(words))]
    lines += ['{"events": [{"start": 0.0, "end": 2.5, "description": "a man walks"}]}']
    lines += ['{"captions": ["a dog runs", "a car stops"]}', "0123456789 .,:;!?'\"[]{}()-_"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines * 4, trainer=trainer)
    state = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return dict(state["vocab"]), merges  # type: ignore[arg-type]


def _tokenizer() -> tuple[Any, dict[str, int], int]:
    """The offline Qwen2 tokenizer, the ids of its special tokens, and a padded vocabulary size."""
    from transformers import Qwen2Tokenizer

    vocab, merges = _train_tokenizer(vocab_size=640)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return tokenizer, ids, ((len(tokenizer) + 63) // 64) * 64


def _text_config(ids: dict[str, int], vocab_size: int, **extra: Any) -> dict[str, Any]:
    """2 layers, hidden 128, 2 heads of 64 (a head size vLLM's CPU attention supports)."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "max_position_embeddings": 8192,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": True,
        **extra,
    }


def _token_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _save(out: Path, model: Any, processor: Any, ids: dict[str, int], seed: int, name: str) -> Path:
    """Save into a temporary sibling folder, write the marker last, then rename into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / MARKER).write_text(
        f"Tiny randomly initialised {name} built by scripts/build_tiny_models.py for tests. "
        f"seed={seed}, parameters={sum(p.numel() for p in model.parameters())}. Its output is noise.\n",
        encoding="utf-8",
    )
    tmp.chmod(0o755)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def build_qwen2_5_vl(out: Path, seed: int = 0) -> Path:
    """Tiny Qwen2.5-VL: 2 vision blocks of width 64, patch 14; ~0.64 M parameters."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer, ids, vocab_size = _tokenizer()
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]}  # sums to 64 / 2
    config = Qwen2_5_VLConfig(
        text_config=_text_config(ids, vocab_size, max_window_layers=2, rope_parameters=rope),
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": 128,
            "fullatt_block_indexes": [1],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        tie_word_embeddings=True,
        **_token_ids(ids),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    pixels = {"min_pixels": 28 * 28, "max_pixels": 112 * 112}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    return _save(out, model, processor, ids, seed, "Qwen2.5-VL")


def build_qwen3_vl(out: Path, seed: int = 0) -> Path:
    """Tiny Qwen3-VL: 2 vision blocks of width 64, patch 16, one deepstack layer; ~0.75 M parameters."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer, ids, vocab_size = _tokenizer()
    rope = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [8, 12, 12],
        "mrope_interleaved": True,
    }
    config = Qwen3VLConfig(
        text_config=_text_config(ids, vocab_size, rope_parameters=rope),
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": 128,
            "deepstack_visual_indexes": [1],
            "num_position_embeddings": 64,
            "patch_size": 16,
        },
        tie_word_embeddings=True,
        **_token_ids(ids),
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    size = {"size": {"shortest_edge": 32 * 32, "longest_edge": 128 * 128}}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, **size),
        video_processor=Qwen3VLVideoProcessor(**size),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    return _save(out, model, processor, ids, seed, "Qwen3-VL")


BUILDERS: dict[str, Callable[[Path, int], Path]] = {
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen3_vl": build_qwen3_vl,
}


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a finished tiny model (the marker is written last)."""
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/generated/tiny_models"), help="root folder")
    parser.add_argument("--models", nargs="+", choices=sorted(BUILDERS), default=["qwen2_5_vl"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even when the model exists")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in args.models:
        target = args.out / name
        if is_complete(target) and not args.force:
            log.info("tiny %s already built at %s (use --force to rebuild)", name, target)
            continue
        log.info("built tiny %s at %s", name, BUILDERS[name](target, args.seed))


if __name__ == "__main__":
    main()
