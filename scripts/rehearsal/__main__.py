"""``python -m scripts.rehearsal --dataset qvhighlights|charades|tacos``: the dress rehearsal of a real
dataset (``make rehearsal DATASET=...``). Exits 1 when a step fails; the report says which and why."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .run import Options, rehearse
from .sources import DATASETS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scripts.rehearsal", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--dataset", required=True, choices=DATASETS, help="the shipped card to rehearse")
    p.add_argument(
        "--annotations-root",
        type=Path,
        default=None,
        help="folder of the real annotation files [../shared/datasets/DATASET, else the committed sample "
        "tests/data/rehearsal/DATASET]",
    )
    p.add_argument("--out", type=Path, default=None, help="rehearsal folder [runs/rehearsal-DATASET]")
    p.add_argument(
        "--real-widths",
        action="store_true",
        help="SlowFast 2304 + CLIP 512 video and CLIP 512 text features (default: 16 + 12 video, 384 text)",
    )
    p.add_argument(
        "--videos", type=int, default=2, help="train videos that get a video file (stage 1 runs on them) [2]"
    )
    p.add_argument(
        "--limit-videos", type=int, default=None, metavar="N", help="only N videos per split [all]"
    )
    p.add_argument(
        "--max-video-seconds",
        type=float,
        default=60.0,
        help="prefer videos this short for the video files (the tiny MLLM captions every clip) [60]",
    )
    p.add_argument(
        "--train-steps", type=int, default=4, help="training steps (one epoch of that many batches) [4]"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic world [0]")
    p.add_argument(
        "--tiny-model",
        type=Path,
        default=None,
        help="the tiny Qwen2.5-VL folder to use (skips `make tiny-models`) [data/generated/tiny_models/qwen2_5_vl]",
    )
    p.add_argument(
        "--extractor-model",
        action="append",
        default=[],
        metavar="TYPE=PATH",
        help="weights of a feature type's extractor (with --real-widths: slowfast=SLOWFAST_8x8_R50.pyth, "
        "clip=FOLDER); repeatable",
    )
    p.add_argument(
        "--text-encoder", default=None, help="encoder of raw-text queries (default: minilm; CLIP's for 512-d)"
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds a step may take [3600]")
    return p  # fmt: skip


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise SystemExit(f"--extractor-model wants TYPE=PATH, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # as `make` sets them: never wait on a hub
        os.environ.setdefault(key, "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opt = Options(
        dataset=args.dataset,
        out=args.out or Path("runs") / f"rehearsal-{args.dataset}",
        annotations_root=args.annotations_root,
        real_widths=args.real_widths,
        videos=args.videos,
        limit_videos=args.limit_videos,
        max_video_seconds=args.max_video_seconds,
        train_steps=args.train_steps,
        seed=args.seed,
        tiny_model=args.tiny_model,
        timeout=args.timeout,
        extractor_models=tuple(_pair(x) for x in args.extractor_model),
        text_encoder=args.text_encoder,
    )
    rep = rehearse(opt)
    print((opt.out / "rehearsal.md").read_text(encoding="utf-8"))
    print(f"report: {opt.out / 'rehearsal.json'}")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
