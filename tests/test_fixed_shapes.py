"""Fixed shapes (``pad_to_max``) change no numbers, and ``torch.compile`` on them matches eager.

Both compare the first 10 training steps' logged losses (the weighted total and every named loss) of
two CPU runs on the toy world (deterministic algorithms, one thread, no mixed precision).

* Padding to ``max_clips`` / ``max_text_len`` against the default padding to the longest video and
  query: the padding is masked everywhere, so only float rounding differs (masked softmax and sum
  reductions run over more, zero, terms). Dropout is off in this comparison: its random masks are
  drawn over the padded shape, so with dropout on the two runs draw other masks (the same
  distribution, other numbers). Tolerance: the first step to rtol 1e-6; all 10 steps to rtol 1e-4 /
  atol 1e-6 (AdamW's normalised updates grow rounding differences of 1e-7 to ~1e-4 relative on the
  losses that approach 0, e.g. ``esta_event`` at 4e-4 by step 10).
* ``compile: true`` against eager, both with ``pad_to_max`` (one input shape, what
  ``compile_mode: reduce-overhead`` needs on a GPU; CUDA graphs do not exist on a CPU, so the CPU run
  uses the default mode). Inductor fuses and reorders float arithmetic; tolerance rtol 1e-4 /
  atol 1e-6 over the 10 steps. Dropout is off here too (compiled code draws its random masks
  differently from eager). Slow: compiling takes a minute or more on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _train_world import TINY_MODEL, make_world, tiny_overrides

from masra.datasets.card import load_card
from masra.datasets.readers import load_queries
from masra.datasets.store import FeatureStore
from masra.datasets.store_build import build_feature_store
from masra.grounding.config import load_train_config
from masra.grounding.data.resident import build_split
from masra.grounding.train.recipe import run_training

NO_DROPOUT = {**TINY_MODEL, "dropout": 0.0, "input_dropout": 0.0}
PADDED = {"pad_to_max": True, "max_clips": 24, "max_text_len": 12}  # the world has 16 clips, 3-6 tokens


def _step_losses(card: Path, run: Path, **extra: object) -> list[dict[str, float]]:
    cfg = load_train_config(
        str(card),
        None,
        tiny_overrides(card, epochs=2, batch_size=8, log_every=1, seed=7, lr=3e-3, model=NO_DROPOUT, **extra),
        no_config=True,
    )
    run_training(cfg, run)
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    steps = [
        {k: v for k, v in r.items() if k == "loss" or k.startswith("loss_")}
        for r in log
        if not r.get("epoch_end")
    ]
    assert len(steps) == 10 and "loss_esta_event" in steps[0]
    return steps


def _assert_close(a: list[dict[str, float]], b: list[dict[str, float]], rtol: float, atol: float) -> None:
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys()
        for k in x:
            assert y[k] == pytest.approx(x[k], rel=rtol, abs=atol), f"step {i} {k}: {x[k]} vs {y[k]}"


def test_padded_split_has_the_max_shape(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=8, num_val=4)
    dc = load_card(str(card))
    store = FeatureStore.open(build_feature_store(dc, ["train"], None))
    queries, _ = load_queries(dc, "train")
    common: dict[str, object] = {"max_clips": 24, "max_text_len": 12}
    tight = build_split(dc, queries, store, **common)  # type: ignore[arg-type]
    padded = build_split(dc, queries, store, pad_to_max=True, **common)  # type: ignore[arg-type]
    assert tight.video.shape[1] == 16 and padded.video.shape[1] == 24
    assert tight.text.shape[1] < 12 and padded.text.shape[1] == 12
    assert not padded.video_mask[:, 16:].any() and not padded.text_mask[:, tight.text.shape[1] :].any()
    assert torch.equal(padded.video[:, :16], tight.video) and not padded.video[:, 16:].any()
    assert torch.equal(padded.saliency[:, :16], tight.saliency)


def test_padding_to_max_gives_the_same_losses(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=40, num_val=8)
    dynamic = _step_losses(card, tmp_path / "dynamic")
    padded = _step_losses(card, tmp_path / "padded", **PADDED)
    _assert_close(dynamic[:1], padded[:1], rtol=1e-6, atol=0.0)
    _assert_close(dynamic, padded, rtol=1e-4, atol=1e-6)
    assert dynamic[-1]["loss"] != dynamic[0]["loss"]  # it trained


@pytest.mark.slow
def test_compiled_equals_eager_on_fixed_shapes(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=40, num_val=8)
    eager = _step_losses(card, tmp_path / "eager", **PADDED)
    compiled = _step_losses(card, tmp_path / "compiled", compile=True, **PADDED)
    _assert_close(eager, compiled, rtol=1e-4, atol=1e-6)
