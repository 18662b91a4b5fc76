"""Reliability of masra.grounding.config, the training config (issue 15): values of the wrong type are refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from masra.grounding.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig, load_train_config
from masra.pipelines.cli import main


def _load(tmp_path: Path, text: str) -> TrainConfig:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return load_train_config("fixture", str(path))


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("priors_run: true\n", "priors_run", "True"),
        ("epochs: 2.5\n", "epochs", "2.5"),
        ("deterministic: 1\n", "deterministic", "1"),
        ("eval_split: 3\n", "eval_split", "3"),
        ("seed: null\n", "seed", "None"),
        ("lr: '1e-4'\n", "lr", "'1e-4'"),
        ("model: {hidden_dim: '128'}\n", "model.hidden_dim", "'128'"),
        ("model: {use_sora: 'no'}\n", "model.use_sora", "'no'"),
        ("loss: {w_lrca: true}\n", "loss.w_lrca", "True"),
        ("postprocess: {top_k: 2.0}\n", "postprocess.top_k", "2.0"),
        ("postprocess: {snap: 'yes'}\n", "postprocess.snap", "'yes'"),
    ],
)
def test_wrong_type_is_refused_with_key_file_and_value(
    tmp_path: Path, text: str, key: str, value: str
) -> None:
    with pytest.raises(ValueError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert key in msg and str(tmp_path / "c.yaml") in msg and value in msg


def test_right_types_load(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        "lr: 1\nmax_clips: null\neval_split: null\npriors_run: 'true'\nmodel: {hidden_dim: 64, dropout: 0}\n"
        "loss: {w_lrca: 2}\npostprocess: {nms_iou: 0.7}\n",
    )
    assert cfg.lr == 1 and cfg.priors_run == "true" and cfg.eval_split is None
    assert cfg.postprocess.nms_iou == 0.7


def test_dataclasses_check_their_own_types() -> None:
    with pytest.raises(ValueError, match=r"ModelConfig\.hidden_dim.*'64'"):
        ModelConfig(video_dim=4, text_dim=4, hidden_dim="64")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"LossConfig\.rank_levels.*True"):
        LossConfig(rank_levels=True)
    with pytest.raises(ValueError, match=r"PostprocessConfig\.proposals.*1"):
        PostprocessConfig(proposals=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"TrainConfig\.masra.*'false'"):
        TrainConfig(masra="false")  # type: ignore[arg-type]


def test_cli_reports_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {hidden_dim: wide}\n", encoding="utf-8")
    res = CliRunner().invoke(
        main, ["train", "-d", "fixture", "--config", str(path), "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2 and "model.hidden_dim" in res.output and "wide" in res.output
    assert "Traceback" not in res.output
