"""Reliability of masra.grounding.train.checkpoints: checkpoints and resume (issue 15, holes 3, 4 and 10).

- A kill at any instant of a checkpoint save leaves a complete ``best`` and ``last``, and ``--resume``
  continues from the newest complete checkpoint (the kill is simulated by an exception raised at the
  k-th ``os.replace`` / ``os.rename``, for every k).
- ``masra train`` into a folder that holds a run refuses unless ``--overwrite``.
- ``--resume`` refuses a changed config, listing each difference, except for the safe keys, whose
  changes are recorded in ``history.jsonl``.
- A run resumed after a kill writes each log line once.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _train_world import make_world, tiny_overrides
from click.testing import CliRunner
from safetensors.torch import load_file

import masra.grounding.train.trainer as trainer_mod
from masra.grounding.checkpoint import load_checkpoint
from masra.grounding.config import TrainConfig, load_train_config
from masra.grounding.train.recipe import run_training
from masra.pipelines.cli import main


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of the code under test catches it."""


def _kill_at(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    """Raise Killed at the k-th call of os.replace / os.rename (together)."""
    calls = {"n": 0}

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == k:
                raise Killed(f"killed at rename {k}")
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(os, "replace", wrap(os.replace))
    monkeypatch.setattr(os, "rename", wrap(os.rename))


def _step(folder: Path) -> int:
    return int(json.loads((folder / "trainer_state.json").read_text())["step"])


def _config(tmp_path: Path, **extra: object) -> TrainConfig:
    card = make_world(tmp_path / "world", num_train=8, num_val=4)
    return load_train_config(
        str(card), None, tiny_overrides(card, **{"epochs": 3, "batch_size": 4, **extra}), no_config=True
    )


def _to_old_layout(run: Path, *, killed_between_renames: bool = False) -> None:
    """Turn a run folder into an older masra's: plain best/ and last/ folders, no pointers. With
    ``killed_between_renames``: as that masra left it when killed between its two renames of last/."""
    for name in ("best", "last"):
        target = run / name
        if target.is_symlink():
            real = target.resolve()
            target.unlink()
            shutil.copytree(real, target)
        (run / f"{name}.json").unlink(missing_ok=True)
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
    if killed_between_renames:
        os.rename(run / "last", run / ".last.old")


def test_a_kill_at_every_rename_of_a_save_leaves_best_last_and_a_resumable_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No eval split: every checkpoint is both the best and the last, so both move at each save.
    cfg = _config(tmp_path, eval_split=None)
    full = run_training(cfg, tmp_path / "full")
    final = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    base = tmp_path / "base"
    run_training(cfg, base, stop_after_epoch=1)  # checkpoint at step 2
    k, finished = 0, False
    while not finished:
        k += 1
        assert k < 30, "the save never finished"
        run = tmp_path / f"kill{k}"
        shutil.copytree(base, run, symlinks=True)
        with monkeypatch.context() as m:
            _kill_at(m, k)
            try:
                run_training(cfg, run, resume=True, stop_after_epoch=2)  # saves at step 4
                finished = True
            except Killed:
                pass
        for name in ("best", "last"):
            assert (run / name / "model.safetensors").is_file(), f"kill at rename {k}: no complete {name}"
            assert _step(run / name) in (2, 4)
            load_checkpoint(run / name)
        resumed = run_training(cfg, run, resume=True)
        assert resumed["steps"] == full["steps"] == 6
        weights = load_file(str(run / "last" / "model.safetensors"))
        assert all(torch.equal(weights[key], final[key]) for key in final), f"kill at rename {k}"
    assert k >= 4  # several kill points were tried before the save went through
    # Old versions are pruned: only the pointed-to step folder is left.
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000000006"]


@pytest.mark.parametrize("layout", ["links", "old-folders", "no-symlinks"])
def test_publishing_a_checkpoint_is_safe_at_every_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    from masra.grounding.checkpoint import resolve_checkpoint
    from masra.grounding.train.checkpoints import (
        checkpoint_staging,
        find_resume_checkpoint,
        publish_checkpoint,
    )

    def fake(folder: Path, step: int) -> Path:
        folder.mkdir(parents=True)
        for name in ("model.safetensors", "optimizer.safetensors"):
            (folder / name).write_bytes(b"x")
        (folder / "config.json").write_text(json.dumps({"step": step}))
        (folder / "trainer_state.json").write_text(json.dumps({"step": step, "epoch": step}))
        return folder

    def no_symlink(*args: Any, **kwargs: Any) -> None:
        raise OSError("symbolic links are not supported here")

    k, finished = 0, False
    while not finished:
        k += 1
        assert k < 30, "the publish never finished"
        run = tmp_path / f"kill{k}"
        with monkeypatch.context() as m:
            if layout == "no-symlinks":
                m.setattr(os, "symlink", no_symlink)
            if layout == "old-folders":
                fake(run / "best", 1)
                fake(run / "last", 2)
            else:
                publish_checkpoint(fake(checkpoint_staging(run, 2), 2), run, 2, ("best", "last"))
            _kill_at(m, k)
            try:
                publish_checkpoint(fake(checkpoint_staging(run, 4), 4), run, 4, ("best", "last"))
                finished = True
            except Killed:
                pass
        for name in ("best", "last"):
            folder = resolve_checkpoint(run / name)
            assert (folder / "model.safetensors").is_file(), f"kill at rename {k}: no complete {name}"
            if layout == "links":  # the link itself names a complete checkpoint at every instant
                assert (run / name / "config.json").is_file()
        newest = find_resume_checkpoint(run)
        assert newest is not None and _step(newest) in (2, 4)
    assert k >= 4
    for name in ("best", "last"):
        assert _step(resolve_checkpoint(run / name)) == 4
        assert (run / name).is_symlink() == (layout != "no-symlinks")
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000000004"]
    assert sorted(p.name for p in run.iterdir()) == ["best", "best.json", "checkpoints", "last", "last.json"]


def test_resume_of_an_old_run_killed_between_its_renames(tmp_path: Path) -> None:
    """An older masra's run folder killed between ``last -> .last.old`` and ``.last.tmp -> last``."""
    cfg = _config(tmp_path)
    run = tmp_path / "run"
    run_training(cfg, run, stop_after_epoch=1)
    _to_old_layout(run, killed_between_renames=True)
    assert not (run / "last").exists()
    summary = run_training(cfg, run, resume=True)
    assert summary["epochs_done"] == 3 and _step(run / "last") == 6
    assert (run / "best" / "config.json").is_file()
    assert not (run / ".last.old").exists()


def test_training_into_a_folder_that_holds_a_run_needs_overwrite(tmp_path: Path) -> None:
    cfg = _config(tmp_path, epochs=1)
    run = tmp_path / "run"
    run_training(cfg, run)
    before = (run / "best" / "model.safetensors").read_bytes()
    sets = ["--no-config", "--set", "epochs=1", "--set", "batch_size=4", "--set", "priors_encoder=toy"]
    res = CliRunner().invoke(main, ["train", "--dataset", cfg.dataset, "--out", str(run), *sets])
    assert res.exit_code == 1, res.output
    assert "already holds a run" in res.output and "--overwrite" in res.output and "--resume" in res.output
    assert (run / "best" / "model.safetensors").read_bytes() == before
    with pytest.raises(ValueError, match="already holds a run"):
        run_training(cfg, run)
    run_training(cfg, run, overwrite=True)
    assert (run / "best" / "config.json").is_file()
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start"]


def test_resume_refuses_a_changed_config_and_lists_the_differences(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    run = tmp_path / "run"
    run_training(cfg, run, stop_after_epoch=1)
    saved = (run / "last" / "config.json").read_bytes()
    changed = TrainConfig.from_dict({**cfg.to_dict(), "lr": 3e-4, "seed": 7, "batch_size": 2})
    with pytest.raises(ValueError) as e:
        run_training(changed, run, resume=True)
    msg = str(e.value)
    assert "lr: 0.0001 -> 0.0003" in msg and "seed: 2018 -> 7" in msg and "batch_size: 4 -> 2" in msg
    model = dict(cfg.model, hidden_dim=64)
    with pytest.raises(ValueError, match=r"model\.hidden_dim: 32 -> 64"):  # not a size-mismatch traceback
        run_training(TrainConfig.from_dict({**cfg.to_dict(), "model": model}), run, resume=True)
    assert (run / "last" / "config.json").read_bytes() == saved
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_allows_the_safe_changes_and_records_them(tmp_path: Path) -> None:
    cfg = _config(tmp_path, epochs=2)
    run = tmp_path / "run"
    run_training(cfg, run, stop_after_epoch=1)
    more = TrainConfig.from_dict({**cfg.to_dict(), "epochs": 3, "eval_every": 2, "postprocess": {"top_k": 5}})
    summary = run_training(more, run, resume=True)
    assert summary["epochs_done"] == 3
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[1]["step"] == 2 and history[1]["epoch"] == 1 and "time" in history[1]
    assert history[1]["changed"] == {"epochs": [2, 3], "eval_every": [1, 2], "postprocess.top_k": [10, 5]}
    train = json.loads((run / "last" / "config.json").read_text())["train"]  # the values used
    assert train["epochs"] == 3 and train["eval_every"] == 2 and train["postprocess"]["top_k"] == 5
    fewer = TrainConfig.from_dict({**more.to_dict(), "epochs": 2})
    with pytest.raises(ValueError, match=r"epochs: 3 -> 2"):  # below the 3 epochs done
        run_training(fewer, run, resume=True)


def test_a_run_resumed_after_a_kill_writes_each_log_line_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, log_every=1)
    run = tmp_path / "run"
    run_training(cfg, run, stop_after_epoch=1)

    def killed_save(self: Any, *args: Any, **kwargs: Any) -> Path:
        raise Killed("killed before the checkpoint of epoch 2")

    with monkeypatch.context() as m:  # epoch 2 logs its steps and its evaluation, then dies
        m.setattr(trainer_mod.Trainer, "save", killed_save)
        with pytest.raises(Killed):
            run_training(cfg, run, resume=True)
    run_training(cfg, run, resume=True)
    lines = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if not r.get("epoch_end")] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in lines if r.get("epoch_end")] == [1, 2, 3]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in metrics] == [1, 2, 3]
    # TensorBoard shows each step once too: the resumed writer purges the killed run's later events.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == [1, 2, 3, 4, 5, 6]
