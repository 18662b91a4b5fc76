"""Reliability of masra.grounding.train, training (issue 15): an empty eval split and a non-finite loss stop the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _train_world import make_world, tiny_overrides

import masra.grounding.train.trainer as trainer_mod
from masra.grounding.config import load_train_config
from masra.grounding.train.recipe import run_training


def test_empty_eval_split_is_an_error_before_training(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=8, num_val=4)
    (tmp_path / "world" / "annotations" / "val.jsonl").write_text("", encoding="utf-8")
    cfg = load_train_config(str(card), None, tiny_overrides(card, epochs=1), no_config=True)
    with pytest.raises(ValueError, match=r"eval split 'val'.*no queries"):
        run_training(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "last").exists()
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


def test_non_finite_loss_stops_with_step_and_qids_and_keeps_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = make_world(tmp_path / "world", num_train=8, num_val=4)
    cfg = load_train_config(str(card), None, tiny_overrides(card, epochs=3, batch_size=4), no_config=True)
    run = tmp_path / "run"
    run_training(cfg, run, stop_after_epoch=1)  # 2 steps; writes last/
    before = {p.name: p.read_bytes() for p in (run / "last").iterdir() if p.is_file()}
    real = trainer_mod.weighted_total
    calls = {"n": 0}

    def poisoned(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> Any:
        calls["n"] += 1
        total = real(losses, weights)
        return total * float("nan") if calls["n"] == 2 else total

    monkeypatch.setattr(trainer_mod, "weighted_total", poisoned)
    with pytest.raises(FloatingPointError) as e:
        run_training(cfg, run, resume=True)
    msg = str(e.value)
    assert "step 4" in msg and "qid" in msg
    after = {p.name: p.read_bytes() for p in (run / "last").iterdir() if p.is_file()}
    assert after == before
