"""`masra priors` argument handling that needs no model: errors users see, data-parallel argv."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from test_prior_generate import make_world

from masra.pipelines.cli import main
from masra.pipelines.cli_priors_scale import strip_options


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(
        tmp_path_factory.mktemp("cli"), priors={"model": "data/generated/tiny_models/nope_model"}
    )


def invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def test_missing_tiny_model_says_how_to_build_it(card: Path) -> None:
    code, out = invoke("priors", "generate", "--dataset", str(card))
    assert code != 0 and "model folder not found: data/generated/tiny_models/nope_model" in out
    assert "make tiny-models" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--shard", "3/3"), "need 0 <= i < N"),
        (("--shard", "x"), "expected i/N"),
        (("--set", "priors.fps=0", "--model", "Qwen/Qwen2.5-VL-7B-Instruct"), "fps must be > 0"),
        (("--set", "priors.colour=1"), "unknown priors keys ['colour']"),
        (
            ("--prompt-family", "llava", "--model", "Qwen/Qwen2.5-VL-7B-Instruct"),
            "unknown prompt family 'llava'",
        ),
        (("--model", "org/some-text-model"), "no prompt family for model 'org/some-text-model'"),
    ],
)
def test_bad_options(card: Path, args: tuple[str, ...], message: str) -> None:
    code, out = invoke("priors", "generate", "--dataset", str(card), *args)
    assert code != 0 and message in out, out


def test_report_without_shards(card: Path, tmp_path: Path) -> None:
    code, out = invoke("priors", "report", "--dataset", str(card), "--priors-run", str(tmp_path))
    assert code != 0 and "no Parquet shards" in out


def test_strip_options_for_data_parallel_workers() -> None:
    argv = ["priors", "generate", "--dataset", "qvh", "--data-parallel", "8", "--shard=1/2", "--fps", "1"]
    assert strip_options(argv, ("--data-parallel", "--shard")) == [
        "priors",
        "generate",
        "--dataset",
        "qvh",
        "--fps",
        "1",
    ]


def test_data_parallel_launches_one_worker_per_gpu_group(monkeypatch: pytest.MonkeyPatch) -> None:
    import masra.pipelines.cli_priors_scale as cli_priors

    launched: list[tuple[list[str], str]] = []

    class FakeProc:
        def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
            launched.append((cmd, env["CUDA_VISIBLE_DEVICES"]))

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(cli_priors.subprocess, "Popen", FakeProc)
    monkeypatch.setattr(
        cli_priors.sys,
        "argv",
        ["masra", "priors", "generate", "-d", "qvh", "--data-parallel", "2", "--shard", "1/3"],
    )
    cli_priors.launch_data_parallel(2, tp=2, shard=(1, 3))
    assert [(cmd[-2:], gpus) for cmd, gpus in launched] == [
        (["--shard", "2/6"], "0,1"),
        (["--shard", "3/6"], "2,3"),
    ]
    assert launched[0][0][1:6] == ["-m", "masra.pipelines", "priors", "generate", "-d"]
