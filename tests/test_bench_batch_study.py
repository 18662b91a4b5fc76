"""The batch-size study's arithmetic: learning-rate scaling, mean ± standard error, and the pick."""

from __future__ import annotations

import math

import pytest

from bench.batch_study import mean_se, pick_batch, scaled_lr


def test_scaled_lr() -> None:
    assert scaled_lr(1e-3, 32, "sqrt") == pytest.approx(1e-3)
    assert scaled_lr(1e-3, 128, "sqrt") == pytest.approx(2e-3)
    assert scaled_lr(1e-3, 256, "linear") == pytest.approx(8e-3)


def test_mean_se() -> None:
    s = mean_se([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["n"] == 3
    assert s["se"] == pytest.approx(1 / math.sqrt(3), abs=1e-3)
    assert math.isnan(float(mean_se([4.0])["se"]))


def test_pick_is_the_largest_batch_within_one_standard_error() -> None:
    # Batch 32: mean 60, se 2 / sqrt(3) = 1.155 -> floor 58.85.
    ref = [58.0, 60.0, 62.0]
    assert pick_batch({"32": ref, "128": [59.0, 59.5, 59.0], "256": [58.0, 58.5, 58.0]}) == 128
    assert pick_batch({"32": ref, "128": [61.0, 62.0, 60.0], "256": [59.5, 59.0, 59.0]}) == 256
    assert pick_batch({"32": ref, "128": [50.0, 51.0, 52.0], "256": [40.0, 41.0, 42.0]}) == 32
    assert pick_batch({"32": [60.0], "128": [60.0]}) is None  # one seed: no standard error
