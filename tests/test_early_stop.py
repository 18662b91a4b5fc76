"""Early stopping on a held-out split (TrainConfig.early_stop_patience): when it stops, what it reports,
and that a resumed run which had stopped stays stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from _train_world import make_world, tiny_overrides

from masra.grounding.config.train import TrainConfig, load_train_config
from masra.grounding.train.recipe import run_training


def _cfg(card: Path, **extra: object) -> TrainConfig:
    return load_train_config(str(card), None, tiny_overrides(card, **extra), no_config=True)


def test_a_run_that_stops_improving_stops_after_patience_evaluations(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=12, num_val=4, num_clips=10)
    # A learning rate this small leaves every evaluation equal to the first: no new best after epoch 1.
    cfg = _cfg(card, epochs=20, eval_every=1, lr=1e-12, early_stop_patience=3)
    summary = run_training(cfg, tmp_path / "run")
    assert summary["stopped_early"] is True
    assert summary["best_epoch"] == 1 and summary["epochs_done"] == 4
    assert summary["best_step"] == summary["steps"] // 4
    resumed = run_training(
        _cfg(card, epochs=20, eval_every=1, lr=1e-12, early_stop_patience=3), tmp_path / "run", resume=True
    )
    assert resumed["epochs_done"] == 4 and resumed["stopped_early"] is True
    # Without patience the same run trains every epoch.
    full = run_training(_cfg(card, epochs=6, eval_every=2, lr=1e-12), tmp_path / "full")
    assert full["epochs_done"] == 6 and full["stopped_early"] is False


def test_patience_needs_an_eval_split_and_a_positive_count(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=4, num_val=2)
    with pytest.raises(ValueError, match="early_stop_patience must be >= 1"):
        _cfg(card, early_stop_patience=0)
    with pytest.raises(ValueError, match="needs an eval_split"):
        _cfg(card, early_stop_patience=2, eval_split=None)


def test_no_early_stop_before_the_minimum(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=12, num_val=4, num_clips=10)
    cfg = _cfg(card, epochs=20, eval_every=1, lr=1e-12, early_stop_patience=2, early_stop_min_epochs=6)
    summary = run_training(cfg, tmp_path / "run")
    assert summary["stopped_early"] is True and summary["best_epoch"] == 1 and summary["epochs_done"] == 6
