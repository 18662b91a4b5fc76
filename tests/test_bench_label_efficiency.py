"""The label-efficiency study's bookkeeping: step budgets, paired differences, table and plot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.label_efficiency import SETTINGS, build_parser, paired, plot, render, run_name, steps_per_epoch


def test_every_fraction_gets_the_same_steps() -> None:
    # 800 queries at batch 32: 3 steps per epoch at 10 %, 25 at 100 %.
    assert steps_per_epoch(800, 0.1, 32) == 3 and steps_per_epoch(800, 1.0, 32) == 25
    assert steps_per_epoch(5, 0.01, 32) == 1  # at least one labelled query
    for f in (0.1, 0.25, 0.5, 1.0):
        epochs = -(-500 // steps_per_epoch(800, f, 32))
        assert 500 <= epochs * steps_per_epoch(800, f, 32) < 500 + steps_per_epoch(800, f, 32)


def test_paired_differences_and_standard_error() -> None:
    out = paired([50.0, 60.0, 70.0], [40.0, 58.0, 61.0])  # differences 10, 2, 9
    assert out["mean"] == pytest.approx(7.0) and out["n"] == 3 and out["wins"] == 3
    assert out["se"] == pytest.approx(round(math.sqrt(19.0) / math.sqrt(3), 3))
    assert math.isnan(float(paired([1.0], [2.0])["se"]))


def test_settings_differ_only_in_what_they_say() -> None:
    assert SETTINGS["baseline"] == {"masra": False}
    ignored = SETTINGS["masra+ignored"]
    assert all(ignored[k] == 0.0 for k in ignored if k.startswith("loss.w_"))
    assert {SETTINGS[s]["priors_run"] for s in ("masra+true", "masra+shuffled", "masra+noisy")} == {
        "reference",
        "shuffled",
        "noisy",
    }
    assert run_name("masra+true", 0.25, 2018) == "masra_true-f0.25-seed2018"
    assert build_parser().parse_args([]).eval_split == "test"


def test_render_and_plot(tmp_path: Path) -> None:
    fr = [0.1, 1.0]
    results = {
        "eval_on": "test split",
        "eval_split": "test",
        "world": "open world seed 0",
        "seeds": [1, 2],
        "steps": 10,
        "machine": "test",
        "date": "now",
        "fractions": fr,
        "results": {
            "baseline": {"0.1": [10.0, 12.0], "1": [40.0, 44.0]},
            "masra+true": {"0.1": [30.0, 31.0], "1": [50.0, 52.0]},
        },
        "paired": {
            "masra+true - baseline": {
                "0.1": paired([30.0, 31.0], [10.0, 12.0]),
                "1": paired([50.0, 52.0], [40.0, 44.0]),
            }
        },
    }
    table = render(results)
    assert "| baseline | 11.00 ± 1.41 | 42.00 ± 2.83 |" in table
    assert "| masra+true - baseline | +19.50 ± 0.50 (2/2) | +9.00 ± 1.00 (2/2) |" in table
    plot(results, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_a_candidate_is_the_defaults_plus_its_overrides_and_its_guard_pairs_by_seed() -> None:
    from bench.label_efficiency import candidate_setting, guard

    name, setting = candidate_setting(["model.num_encoder_layers=1"])
    assert name.startswith("masra+true+cand-") and setting == {
        **SETTINGS["masra+true"],
        "model.num_encoder_layers": 1,
    }
    assert candidate_setting(["model.num_encoder_layers=1"])[0] == name  # the same change, the same runs
    assert candidate_setting(["model.num_encoder_layers=0"])[0] != name
    values = {
        "R1@0.5": {"masra+true": {"0.1": [60.0, 62.0, 64.0], "1": [80.0, 82.0, 84.0]},
                   name: {"0.1": [61.0, 62.0, 65.0], "1": [79.0, 82.5, 83.0]}},
        "mAP": {"masra+true": {"0.1": [40.0, 42.0, 44.0], "1": [60.0, 61.0, 62.0]},
                name: {"0.1": [35.0, 36.0, 38.0], "1": [60.0, 61.0, 62.0]}},
    }  # fmt: skip
    out = guard(values, name, [0.1, 1.0])
    assert out["R1@0.5"]["0.1"]["holds"] and out["R1@0.5"]["1"]["holds"]  # -0.5 +/- 0.5 at 100 %
    assert not out["mAP"]["0.1"]["holds"]  # -5.7, every seed lower
    assert out["mAP"]["1"]["holds"] and not out["holds"]
