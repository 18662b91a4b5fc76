"""The converged study (bench/converged.py) end to end on the toy world: held-out split, early stopping,
one scoring of the best checkpoint on the report split, paired tables and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _train_world import make_world, tiny_overrides

import bench.converged as conv


def test_a_tiny_converged_study_runs_scores_and_renders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    card = make_world(tmp_path / "world", num_train=16, num_val=6, num_clips=10)
    config = tmp_path / "tiny.yaml"
    over = tiny_overrides(card)
    over.pop("eval_every")
    config.write_text(yaml.safe_dump(over), encoding="utf-8")
    monkeypatch.setattr(conv, "REPO", tmp_path)  # results under tmp_path/bench/results
    (tmp_path / "bench" / "results").mkdir(parents=True)
    conv.main(
        [
            "--card", str(card), "--config", str(config), "--report-split", "val",
            "--work", str(tmp_path / "work"), "--settings", "baseline,masra+true", "--seeds", "2",
            "--fractions", "0.5,1", "--max-steps", "12", "--eval-steps", "2", "--patience", "2", "--min-steps", "4",
            "--holdout", "0.25", "--jobs", "1",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "| masra+true |" in out and "masra+true - baseline" in out
    (result,) = (tmp_path / "bench" / "results").glob("*-converged-openworld.json")
    data = json.loads(result.read_text())
    assert data["report_split"] == "val" and data["seeds"] == [2018, 2019]
    for setting in ("baseline", "masra+true"):
        for f in ("0.5", "1"):
            assert len(data["results"]["R1@0.5"][setting][f]) == 2
            assert all(0 < s <= 12 + 4 for s in data["results"]["steps"][setting][f])  # capped by max-steps
    # The runs trained on the fit part and chose on the held-out part, never on the report split.
    run = tmp_path / "work" / "runs" / "masra_true-f1-seed2018"
    cfg = json.loads((run / "best" / "config.json").read_text())["train"]
    assert cfg["train_split"] == "fit" and cfg["eval_split"] == "heldout" and cfg["early_stop_patience"] == 2
    fit = (tmp_path / "work" / "splits" / "fit.jsonl").read_text().splitlines()
    held = (tmp_path / "work" / "splits" / "heldout.jsonl").read_text().splitlines()
    assert len(fit) + len(held) == 16 and not {json.loads(x)["vid"] for x in fit} & {
        json.loads(x)["vid"] for x in held
    }
    report_path = run / "report.json"
    report = json.loads(report_path.read_text())
    assert report["split"] == "val" and "MR-full-R1@0.5" in report["brief"]
    assert result.with_suffix(".png").is_file()
    # A second call trains nothing (every run finished): the reports are not rewritten.
    stamp = report_path.stat().st_mtime_ns
    conv.main(
        ["--card", str(card), "--config", str(config), "--report-split", "val", "--work", str(tmp_path / "work"),
         "--settings", "baseline,masra+true", "--seeds", "2", "--fractions", "0.5,1", "--max-steps", "12",
         "--eval-steps", "2", "--patience", "2", "--min-steps", "4", "--holdout", "0.25", "--jobs", "1"]
    )  # fmt: skip
    assert report_path.stat().st_mtime_ns == stamp
    # The accuracy guard at convergence: only the candidate's runs train; masra+true is kept.
    capsys.readouterr()
    conv.main(
        ["--card", str(card), "--config", str(config), "--report-split", "val", "--work", str(tmp_path / "work"),
         "--settings", "masra+true", "--seeds", "2", "--fractions", "0.5,1", "--max-steps", "12",
         "--eval-steps", "2", "--patience", "2", "--min-steps", "4", "--holdout", "0.25", "--jobs", "1",
         "--tag=-guard", "--candidate", "model.negative_share=0.5"]
    )  # fmt: skip
    assert report_path.stat().st_mtime_ns == stamp
    assert "Accuracy guard of `model.negative_share=0.5`" in capsys.readouterr().out
    (guarded,) = (tmp_path / "bench" / "results").glob("*-converged-openworld-guard.json")
    guard = json.loads(guarded.read_text())
    assert guard["candidate"]["overrides"] == ["model.negative_share=0.5"]
    assert {f: guard["guard"]["R1@0.5"][f]["n"] for f in ("0.5", "1")} == {"0.5": 2, "1": 2}
    cand_run = tmp_path / "work" / "runs" / conv.run_name(guard["candidate"]["name"], 1.0, 2018)
    assert json.loads((cand_run / "best" / "config.json").read_text())["model"]["negative_share"] == 0.5


def test_studies_that_select_differently_never_share_a_work_folder() -> None:
    assert conv.work_name("fixture", "MR-full-R1@0.5") == "converged-fixture"
    assert conv.work_name("openworld", "MR-full-mAP") == "converged-openworld-map"
    assert conv.work_name("openworld", "MR-full-R1@0.7") == "converged-openworld-r1-0.7"
