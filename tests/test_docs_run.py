"""Run every ``masra`` command that README.md and docs/*.md print, on the fixture (slow: `make test-docs`).

Each command runs as printed in a sandbox folder laid out like a checkout (a small fixture under
``data/generated/fixture``, the tiny test MLLM, ``configs/fixture.yaml``: the shipped fixture config
with two epochs), after the rewrites a user on the fixture would make: a real dataset becomes
``fixture`` (its ``root`` and feature-folder overrides dropped, split ``test`` becoming ``val``),
placeholders become fixture files, optional ``[...]`` parts are left out and ``a|b`` takes ``a``. What cannot run here is in
:data:`NOT_HERE` with the reason, and each entry must still match a printed command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _doc_commands import REPO, concrete, doc_commands
from click.testing import CliRunner

from masra.grounding.config import builtin_config_dir
from masra.pipelines.cli import main

pytestmark = pytest.mark.slow

REAL = {"qvhighlights", "charades", "charades_jsonl", "tacos"}
DROP_SETS = ("root=", "card.root=", "video_features.")
ANN = "data/generated/fixture/annotations/fixture_val.jsonl"
WORDS = {  # placeholder or user file -> fixture stand-in
    "NAME": "fixture",
    "SPLIT": "val",
    "CKPT": "runs/fixture/best",
    "FILE": "import.jsonl",
    "M": "data/generated/tiny_models/qwen2_5_vl",
    "ID": "my-model",
    "PATH": ANN,
    "preds.jsonl": "runs/fixture/best/predictions_val.jsonl",
    "highlight_val_release.jsonl": ANN,
    "gt.jsonl": ANN,
    "/tmp/my_val.jsonl": ANN,
    "my_queries.jsonl": ANN,
    "captions.jsonl": "import.jsonl",
    "video.npz": "video.npz",
    "list.txt": "videos.txt",
    "my_videos/": "data/generated/fixture/videos",
    "/data/qvh/videos": "data/generated/fixture/videos",
    "my_videos/x.mp4": "data/generated/fixture/videos/fixture_val_0002.mp4",
    "my.mp4": "data/generated/fixture/videos/fixture_val_0002.mp4",
    "fixture_val_0028": "fixture_val_0002",
    "data/generated/fixture/videos/fixture_val_0028.mp4": "data/generated/fixture/videos/fixture_val_0002.mp4",
    "runs/qvh/best": "runs/fixture/best",
    "runs/qvhighlights/best": "runs/fixture/best",
    "<prior": "reference",
}
NOT_HERE = {  # printed command (start) -> why it does not run in this test
    "make ": "make targets run the masra commands below; CI runs `make test`, and `make demo` its own job",
    "accelerate launch": "needs several GPUs",
    "masra app": "serves until stopped; tests/test_app.py drives it in a headless browser",
    "masra priors generate --dataset qvhighlights --data-parallel 8": "needs 8 GPU engines",
    "masra priors generate --dataset qvhighlights --shard": "a SLURM array of 8-GPU engines",
    "masra priors generate --dataset qvhighlights --executor ray --ray-address auto": "needs a Ray cluster",
    **dict.fromkeys(
        (
            "masra features extract --dataset my_videos.yaml",
            "masra priors generate --dataset my_videos.yaml",
            "masra priors embed --dataset my_videos.yaml",
            "masra train --dataset my_videos.yaml",
            "masra predict --checkpoint runs/mine/best",
        ),
        "a card of the reader's own collection; tests/test_unlabelled_path.py runs this path on the fixture's videos",
    ),
}


def on_fixture(words: list[str], n: int = 0) -> list[str]:
    """The command a fixture user would type for the printed ``words`` (module docstring).

    ``DIR`` becomes ``out/<n>``, one folder per command. A train or ablate run of a real dataset
    without ``--out`` keeps its default folder ``runs/<that dataset>``.
    """
    out: list[str] = []
    words = concrete(words)
    real = next((w for w in words if w in REAL), None)
    if real and words[1] in ("train", "ablate") and "--out" not in words:
        words = [*words, "--out", f"runs/{real}"]
    i = 0
    while i < len(words):
        w = f"out/{n}" if words[i] == "DIR" else WORDS.get(words[i], words[i])
        if words[i] == "run>":  # the second word of `<prior run>`
            i += 1
            continue
        if out and out[-1] in ("--dataset", "-d") and w in REAL:
            w = "fixture"
        if out and out[-1] == "--split" and w == "test":
            w = "val"
        if w == "--set" and i + 1 < len(words) and words[i + 1].startswith(DROP_SETS):
            i += 2
            continue
        out.append(w)
        i += 1
    return out


def _skip_reason(text: str) -> str | None:
    return next((why for start, why in NOT_HERE.items() if text.startswith(start)), None)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout-like folder: small fixture, tiny MLLM, two-epoch fixture config, a trained run."""
    sb = tmp_path_factory.mktemp("docs")
    fixture = sb / "data" / "generated" / "fixture"
    res = CliRunner().invoke(
        main, ["fixture", "--out", str(fixture), "--train-videos", "12", "--val-videos", "6"]
    )
    assert res.exit_code == 0, res.output
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_tiny_models.py"),
            "--out",
            str(sb / "data/generated/tiny_models"),
        ],
        check=True,
        capture_output=True,
    )
    cfg = yaml.safe_load((builtin_config_dir() / "fixture.yaml").read_text(encoding="utf-8"))
    cfg.update(epochs=2, warmup_epochs=0, eval_every=1, batch_size=8)
    (sb / "configs").mkdir()
    (sb / "configs" / "fixture.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    (sb / "videos.txt").write_text(
        "".join(f"{p}\n" for p in sorted((fixture / "videos").glob("fixture_val_*.mp4"))[:2]),
        encoding="utf-8",
    )
    _import_file(fixture, sb / "import.jsonl")
    return sb


def _import_file(fixture: Path, path: Path) -> None:
    """A `masra priors import` file (events, clip captions) for two of the fixture's train videos."""
    rows = [json.loads(x) for x in (fixture / "annotations" / "fixture_train.jsonl").read_text().splitlines()]
    lines = []
    firsts = list({r["vid"]: r for r in reversed(rows)}.values())[:2]  # two videos, one row each
    for r in firsts:
        n = int(-(-float(r["duration"]) // 2.0))
        events = [{"start": w[0], "end": w[1], "text": r["query"]} for w in r["relevant_windows"]]
        lines.append(
            {"vid": r["vid"], "duration": r["duration"], "events": events, "clip_captions": ["a shape"] * n}
        )
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")


COMMANDS = doc_commands()


def test_every_printed_command_runs_on_the_fixture(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sandbox)
    monkeypatch.setenv("MASRA_CONFIGS", str(sandbox / "configs"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    setup = ["train", "--dataset", "fixture", "--out", "runs/fixture"]
    for args in (setup, ["train", "--dataset", "fixture", "--out", "runs/demo", "--priors-run", "reference"]):
        res = runner.invoke(main, args)
        assert res.exit_code == 0, res.output
    grounder_npz(sandbox)
    ran, failed = 0, []
    for n, cmd in enumerate(COMMANDS):
        if _skip_reason(cmd.text) or cmd.words[0] != "masra":
            continue
        argv = on_fixture(cmd.words, n)
        res = runner.invoke(main, argv[1:])
        ran += 1
        if res.exit_code != 0:
            failed.append(f"{cmd.where}: `{' '.join(argv)}` exit {res.exit_code}: {res.output[-600:]}")
    assert not failed, "\n\n".join(failed)
    assert ran >= 40, f"only {ran} commands ran"


def grounder_npz(sb: Path) -> None:
    """`video.npz` in the store layout, for `masra predict --video-features video.npz`."""
    import numpy as np

    feats = sb / "data" / "generated" / "fixture" / "features"
    parts = {t: np.load(feats / t / "fixture_val_0002.npz")["features"] for t in ("appearance", "motion")}
    np.savez(sb / "video.npz", **parts)


def test_every_skip_names_a_printed_command() -> None:
    for start in NOT_HERE:
        assert any(c.text.startswith(start) for c in COMMANDS), f"NOT_HERE entry {start!r} matches no command"
    assert on_fixture(["masra", "train", "--dataset", "qvhighlights", "--set", "card.root=/x", "--priors-run", "<prior", "run>"]) == [
        "masra", "train", "--dataset", "fixture", "--priors-run", "reference", "--out", "runs/qvhighlights",
    ]  # fmt: skip
    assert on_fixture(["masra", "fixture", "--out", "DIR", "[--seed", "0]"], 7) == [
        "masra",
        "fixture",
        "--out",
        "out/7",
    ]


def test_a_broken_printed_command_fails_the_run(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's check can fail: a command whose option value is wrong exits non-zero."""
    monkeypatch.chdir(sandbox)
    res = CliRunner().invoke(
        main, on_fixture(["masra", "data", "stats", "--dataset", "nosuch", "--split", "val"])[1:]
    )
    assert res.exit_code != 0
