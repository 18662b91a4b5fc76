"""The pseudo-query study (bench/pseudo_study.py): step budgets, absent settings, pairing by seed, and
the whole driver end to end on the toy world (both lengths, resumed without retraining)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import yaml
from _train_world import make_world, tiny_overrides

import bench.pseudo_study as ps
from bench.label_efficiency import paired


def test_budgets_weights_and_absent_settings() -> None:
    # With labels an epoch is a pass over the labelled queries; at 0 % over the kept pseudo-queries.
    assert ps.epoch_steps(0.1, num_queries=800, num_pseudo=1700, batch_size=32, weight_zero=1.0) == 3
    assert ps.epoch_steps(1.0, num_queries=800, num_pseudo=1700, batch_size=32, weight_zero=1.0) == 25
    assert ps.epoch_steps(0.0, num_queries=800, num_pseudo=1700, batch_size=32, weight_zero=1.0) == 54
    assert ps.epoch_steps(0.0, num_queries=800, num_pseudo=1700, batch_size=32, weight_zero=0.5) == 107
    assert [s for s in ps.SETTINGS if ps.trainable(s, 0.0)] == ["baseline+pseudo", "masra+true+pseudo"]
    assert all(ps.trainable(s, 0.1) for s in ps.SETTINGS)
    over = ps.setting_overrides("baseline+pseudo", 0.0, priors_run="styled", weight=0.5, weight_zero=1.0)
    assert over == {
        "priors_run": "styled",
        "label_fraction": 0.0,
        "masra": False,
        "pseudo_queries.weight": 1.0,
    }
    over = ps.setting_overrides("masra+true+pseudo", 0.1, priors_run="styled", weight=0.5, weight_zero=1.0)
    assert over["pseudo_queries.weight"] == 0.5 and "masra" not in over
    assert "pseudo_queries.weight" not in ps.setting_overrides(
        "masra+true", 0.1, priors_run="styled", weight=0.5, weight_zero=1.0
    )
    assert ps.build_parser().parse_args([]).priors_run == "styled"


def test_pairs_follow_seeds_not_positions() -> None:
    # Seed 2019 of the second setting is missing: the pairs are 2018 and 2020, never shifted.
    out = ps.pair_by_seed([50.0, 60.0, 70.0], [2018, 2019, 2020], [40.0, 61.0], [2018, 2020])
    assert out is not None and out["seeds"] == [2018, 2020] and out["n"] == 2
    assert out["mean"] == pytest.approx(9.5) and out["se"] == pytest.approx(0.5) and out["wins"] == 2
    assert ps.pair_by_seed(None, None, [1.0], [2018]) is None  # absent: no number, not zero
    r1 = {
        "baseline+pseudo": {"0": [30.0, 34.0], "1": [50.0, 50.0]},
        "masra+true": {"0": None, "1": [40.0, 60.0]},
    }
    seeds = {"baseline+pseudo": {"0": [1, 2], "1": [1, 2]}, "masra+true": {"0": None, "1": [1, 2]}}
    ratio = ps.zero_label_ratio(r1, seeds)  # type: ignore[arg-type]
    assert ratio is not None and ratio["best_at_0"] == "baseline+pseudo"
    assert ratio["ratio"] == pytest.approx(32 / 50, abs=1e-3) and not ratio["meets"]
    assert ratio["per_seed"] == {"1": 0.75, "2": 0.567}


def test_a_tiny_pseudo_study_runs_pairs_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    card = make_world(tmp_path / "world", num_train=16, num_val=6, num_clips=10, event_texts=True)
    config = tmp_path / "tiny.yaml"
    over = tiny_overrides(card)
    over.pop("eval_every")
    config.write_text(yaml.safe_dump(over), encoding="utf-8")
    monkeypatch.setattr(ps, "REPO", tmp_path)  # results under tmp_path/bench/results
    (tmp_path / "bench" / "results").mkdir(parents=True)
    argv = [
        "--card", str(card), "--config", str(config), "--priors-run", "reference", "--eval-split", "val",
        "--work", str(tmp_path / "work"), "--seeds", "2", "--fractions", "0,1", "--steps", "4",
        "--max-steps", "6", "--eval-steps", "2", "--patience", "1", "--min-steps", "2", "--holdout", "0.25",
        "--jobs", "1", "--set", "pseudo_queries.generic_min_videos=3",
    ]  # fmt: skip
    ps.main(argv)
    out = capsys.readouterr().out
    assert "| baseline | absent |" in out and "baseline+pseudo - masra+true+pseudo" in out
    (result,) = (tmp_path / "bench" / "results").glob("*-pseudo-toy.json")
    data = json.loads(result.read_text())
    assert result.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert data["seeds"] == [2018, 2019] and data["priors_run"] == "reference"
    assert data["pseudo_queries"]["weight_at_0"] == 1.0 and data["pseudo_queries"]["per_step_at_0"] == 8
    assert set(data["lengths"]) == {"steps", "converged"}
    for name, block in data["lengths"].items():
        # One kept pseudo-query per train video (the "background" lines are generic); 8 per step at 0 %.
        kept = 16 if name == "steps" else 12  # converged trains on the 12 videos not held out
        assert block["kept_pseudo_queries"] == kept
        assert block["steps_per_epoch"] == {"0": math.ceil(kept / 8), "1": math.ceil(kept / 8)}
        r1, seeds = block["results"], block["seeds_done"]
        for s in ("baseline", "masra+true"):
            assert r1[s]["0"] is None and seeds[s]["0"] is None  # absent, not zero
            assert block["paired"]["masra+true+pseudo - masra+true"]["0"] is None
        for s in ps.SETTINGS:
            assert len(r1[s]["1"]) == 2 and seeds[s]["1"] == [2018, 2019]
        for s in ps.PSEUDO:
            assert len(r1[s]["0"]) == 2
        steps = block["steps_trained"]
        if name == "steps":  # every run its epochs' worth of the 4-step budget
            assert all(v == 2 * math.ceil(4 / 2) for s in ps.SETTINGS for v in steps[s]["1"])
        else:
            assert all(0 < v <= 6 + 2 for s in ps.PSEUDO for v in steps[s]["0"])
        # The pairing math, recomputed from the per-seed values.
        for pair, per in block["paired"].items():
            a, b = pair.split(" - ")
            for f, got in per.items():
                if got is None:
                    assert r1[a][f] is None or r1[b][f] is None
                    continue
                want = paired(r1[a][f], r1[b][f])
                assert got["mean"] == pytest.approx(want["mean"]) and got["n"] == 2
                assert got["se"] == pytest.approx(want["se"]) and got["wins"] == want["wins"]
        ratio = block["zero_label_ratio"]
        at0 = [s for s in ps.SETTINGS if s in ps.PSEUDO]  # a tie goes to the first in settings order
        best = max(at0, key=lambda s: statistics.fmean(r1[s]["0"]))
        assert ratio["best_at_0"] == best
        if statistics.fmean(r1["masra+true"]["1"]) > 0:
            assert ratio["ratio"] == pytest.approx(
                statistics.fmean(r1[best]["0"]) / statistics.fmean(r1["masra+true"]["1"]), abs=1e-3
            )
    # At 0 % the runs trained from priors only, on the pseudo-queries of the fit videos (converged).
    run = tmp_path / "work" / "converged" / "runs" / "baseline_pseudo-f0-seed2018"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pseudo_queries"]["priors_only"] and summary["pseudo_queries"]["pseudo_queries"] == 12
    assert json.loads((run / "report.json").read_text())["split"] == "val"
    # A second call trains nothing (every run finished): the reports are not rewritten.
    stamp = (run / "report.json").stat().st_mtime_ns
    ps.main(argv)
    assert (run / "report.json").stat().st_mtime_ns == stamp
