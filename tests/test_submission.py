"""Submission files and `masra eval --predictions`: round trip, line-numbered errors, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from masra.grounding.metrics import read_ground_truth
from masra.grounding.submission import Prediction, SubmissionError, read_submission, write_submission
from masra.pipelines.cli import main

DATA = Path(__file__).parent / "data"
QVH_SAMPLE = DATA / "qvhighlights_val_sample.jsonl"
TACOS_SAMPLE = DATA / "tacos_sample.jsonl"


def perfect_submission(annotations: Path, out: Path, drop: int = 0) -> Path:
    """GT windows as predictions (score 1) and the annotators' summed scores as saliency."""
    with open(out, "w") as f:
        for g in read_ground_truth(annotations)[drop:]:
            rec: dict = {"qid": g.qid, "pred_relevant_windows": [[s, e, 1.0] for s, e in g.windows]}
            if g.saliency_scores is not None:
                sal = [0.0] * int(g.duration / 2)
                for cid, row in zip(g.relevant_clip_ids or (), g.saliency_scores, strict=True):
                    sal[cid] = float(sum(row))
                rec["pred_saliency_scores"] = sal
            f.write(json.dumps(rec) + "\n")
    return out


def test_round_trip(tmp_path: Path) -> None:
    preds = [
        Prediction(
            qid=3, windows=((0.0, 4.0, 0.9), (2.0, 8.0, 0.5)), saliency=(0.1, 0.2), vid="v", query="q"
        ),
        Prediction(qid="s1_0", windows=()),
    ]
    path = write_submission(tmp_path / "sub" / "p.jsonl", preds)
    assert read_submission(path) == preds
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"qid": 2}', "missing field 'pred_relevant_windows'"),
        ('{"qid": 2, "pred_relevant_windows": [[0, 1]]}', r"window 0 must be \[start, end, score\]"),
        ('{"qid": 2, "pred_relevant_windows": [[5, 1, 0.3]]}', "ends before it starts"),
        ('{"qid": 2, "pred_relevant_windows": [[0, 1, NaN]]}', "must be finite"),
        ('{"qid": 2, "pred_relevant_windows": [], "pred_saliency_scores": []}', "non-empty list"),
        ('{"qid": 1, "pred_relevant_windows": []}', r"duplicate qid 1 \(first on line 1\)"),
    ],
)
def test_malformed_line_names_its_number(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]]}\n\n' + line + "\n")
    with pytest.raises(SubmissionError, match=message) as err:
        read_submission(path)
    assert err.value.line == 3
    assert str(err.value).startswith(f"{path}:3:")


def test_cli_scores_a_perfect_submission(tmp_path: Path) -> None:
    preds = perfect_submission(QVH_SAMPLE, tmp_path / "p.jsonl")
    out = tmp_path / "m.json"
    res = CliRunner().invoke(
        main, ["eval", "--predictions", str(preds), "--annotations", str(QVH_SAMPLE), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads(out.read_text())
    assert metrics["brief"]["MR-full-mAP"] == 100.0
    assert metrics["brief"]["MR-full-R1@0.7"] == 100.0
    assert metrics["brief"]["HL-min-Fair-Hit1"] == 100.0
    assert "| MR-full-mAP " in res.output


def test_cli_qid_mismatch_and_intersection(tmp_path: Path) -> None:
    preds = perfect_submission(TACOS_SAMPLE, tmp_path / "p.jsonl", drop=1)
    args = ["eval", "--predictions", str(preds), "--annotations", str(TACOS_SAMPLE)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0
    assert "1 GT qids have no prediction: 's17-d69_0'" in res.output
    res = CliRunner().invoke(main, [*args, "--intersection", "--dataset", "tacos"])
    assert res.exit_code == 0, res.output
    assert "scored the 2 shared qids only" in res.output
    assert "MR-full-mIoU" in res.output  # Charades/TACoS brief keys


def test_cli_reports_bad_line(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"qid": "s17-d69_0", "pred_relevant_windows": [[0, 1, 1]]}\n{"qid": \n')
    res = CliRunner().invoke(main, ["eval", "--predictions", str(preds), "--annotations", str(TACOS_SAMPLE)])
    assert res.exit_code != 0
    assert f"{preds}:2: invalid JSON" in res.output


# Runs the CLI like the `masra` script does, then prints the top-level packages it imported.
_REPORT_MODULES = """
import atexit, sys
atexit.register(lambda: print("MODULES", *sorted({m.partition(".")[0] for m in sys.modules})))
sys.argv = ["masra", *sys.argv[1:]]
from masra.pipelines.cli import main
main()
"""
HEAVY = ("torch", "transformers", "accelerate", "vllm", "pyarrow", "av")


@pytest.mark.parametrize("command", ["help", "eval"])
def test_cli_start_up_imports_nothing_heavy(tmp_path: Path, command: str) -> None:
    """`masra --help` and scoring a submission file import no torch / transformers / accelerate / vllm."""
    gt = {"qid": 7, "query": "a dog runs", "duration": 10, "vid": "v_0.0_10.0",
          "relevant_windows": [[2, 6]], "relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3], [4, 4, 4]]}  # fmt: skip
    pred = {"qid": 7, "pred_relevant_windows": [[2.0, 6.0, 1.0]], "pred_saliency_scores": [0, 6, 12, 0, 0]}
    (tmp_path / "gt.jsonl").write_text(json.dumps(gt) + "\n")
    (tmp_path / "pred.jsonl").write_text(json.dumps(pred) + "\n")
    args = ["--help"] if command == "help" else [
        "eval", "--predictions", str(tmp_path / "pred.jsonl"), "--annotations", str(tmp_path / "gt.jsonl")
    ]  # fmt: skip
    res = subprocess.run([sys.executable, "-c", _REPORT_MODULES, *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert ("MR-full-mAP" in res.stdout) == (command == "eval")
    modules = set(res.stdout.rpartition("MODULES")[2].split())
    assert "masra" in modules and "click" in modules
    assert not modules & set(HEAVY), f"masra {command} imported {sorted(modules & set(HEAVY))}"
