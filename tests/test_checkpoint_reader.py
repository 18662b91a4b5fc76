"""`read_checkpoint`, the one reader of a checkpoint: typed configs, the prior run, the card once.

A tiny random-weight checkpoint is written in the trainer's layout (no training): the reader must
find it from a run folder (best, else last, also through the pointer files), check its format, type
its configs, name the prior run it trained with, and resolve its card once with the overrides merged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_model

import masra.grounding.checkpoint as checkpoint_module
from masra.grounding.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, read_checkpoint
from masra.grounding.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig
from masra.grounding.infer.grounder import Grounder
from masra.grounding.model import build_model

MODEL = ModelConfig(
    video_dim=8, text_dim=6, prior_dim=4, hidden_dim=16, num_heads=2, ffn_dim=32, num_queries=3,
    lrca_dim=8, dai_codebook_size=4,
)  # fmt: skip


def _card(root: Path) -> Path:
    card = root / "tiny.yaml"
    card.write_text(
        "name: tiny\nformat: qvhighlights\nroot: .\nannotations: {}\nclip_len: 2.0\nmax_clips: 16\n"
        "video_features: {vis: {dir: vis, dim: 6}}\ntemporal_endpoint: true\n"
        "text_features: {dir: text, dim: 6}\nprior_dir: priors\n"
    )
    return card


def _write(folder: Path, card: Path, **config: Any) -> Path:
    """A complete checkpoint folder (the files a pointer needs) with ``config`` merged in."""
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    save_model(build_model(MODEL), str(folder / "model.safetensors"))
    (folder / "optimizer.safetensors").write_bytes(b"")
    (folder / "trainer_state.json").write_text("{}")
    train = {"dataset": str(card), "max_text_len": 8, "postprocess": {"top_k": 4}, "card": {"max_clips": 12}}
    body = {
        "format": CHECKPOINT_FORMAT,
        "dataset": "tiny",
        "model": MODEL.to_dict(),
        "loss": LossConfig().to_dict(),
        "train": train,
        "priors": {"run": "noisy", "encoder": "minilm", "source": "reference", "videos": 3},
        "epoch": 2,
        "step": 7,
        "metrics": {"MR-full-mAP": 1.0},
        **config,
    }
    (folder / "config.json").write_text(json.dumps(body))
    return folder


def test_typed_configs_prior_run_and_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _write(tmp_path / "ckpt", _card(tmp_path))
    ckpt = read_checkpoint(folder, card_overrides={"clip_len": 1.0})
    assert isinstance(ckpt.train, TrainConfig) and ckpt.model == MODEL and isinstance(ckpt.loss, LossConfig)
    assert ckpt.postprocess == PostprocessConfig(top_k=4) and ckpt.train.max_text_len == 8
    assert (ckpt.priors_run, ckpt.epoch, ckpt.step, ckpt.metrics) == ("noisy", 2, 7, {"MR-full-mAP": 1.0})
    loads = []
    real = checkpoint_module.load_card
    monkeypatch.setattr(checkpoint_module, "load_card", lambda *a: loads.append(a) or real(*a))
    card = ckpt.card
    assert ckpt.card is card and len(loads) == 1  # resolved once
    assert (card.name, card.max_clips, card.clip_len) == ("tiny", 12, 1.0)  # the run's overrides, then ours
    g = Grounder.from_checkpoint(ckpt)
    assert g.checkpoint is ckpt and g.card is card and len(loads) == 1
    assert (g.config.clip_len, g.config.max_clips, g.config.video_dim) == (1.0, 12, 6)


def test_the_prior_run_is_the_one_trained_with(tmp_path: Path) -> None:
    card = _card(tmp_path)
    assert read_checkpoint(_write(tmp_path / "none", card, priors=None)).priors_run is None
    older = _write(tmp_path / "older", card)  # before the "priors" record: the training config's name
    config = json.loads((older / "config.json").read_text())
    del config["priors"]
    config["train"]["priors_run"] = "shuffled"
    (older / "config.json").write_text(json.dumps(config))
    assert read_checkpoint(older).priors_run == "shuffled"


def test_a_run_folder_stands_for_its_best_else_its_last_checkpoint(tmp_path: Path) -> None:
    card = _card(tmp_path)
    run = tmp_path / "run"
    step1 = _write(run / "checkpoints" / "step-000000001", card, step=1)
    step2 = _write(run / "checkpoints" / "step-000000002", card, step=2)
    os.symlink("checkpoints/step-000000002", run / "last")
    assert read_checkpoint(run).step == 2  # no best: the last
    os.symlink("checkpoints/step-000000001", run / "best")
    assert read_checkpoint(run).step == 1
    (run / "best").unlink()  # the instant a copied best is swapped: its pointer file names it
    (run / "best.json").write_text(json.dumps({"checkpoint": "checkpoints/step-000000001"}))
    assert read_checkpoint(run).folder == step1 and read_checkpoint(run / "best").folder == step1
    assert read_checkpoint(run / "last").folder.resolve() == step2.resolve()
    model, config = load_checkpoint(run)
    assert config["step"] == 1 and not model.training


def test_format_and_missing_checkpoints_are_refused(tmp_path: Path) -> None:
    card = _card(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a masra checkpoint"):
        read_checkpoint(tmp_path)
    bad = _write(tmp_path / "bad", card, format="other/1")
    with pytest.raises(ValueError, match="format 'other/1'"):
        read_checkpoint(bad)


def test_training_keys_of_another_masra_are_ignored_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _write(tmp_path / "ckpt", _card(tmp_path))
    config = json.loads((folder / "config.json").read_text())
    config["train"]["gone_key"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    assert read_checkpoint(folder).train.max_text_len == 8
    assert "gone_key" in caplog.text


def test_grounder_postprocess_overrides(tmp_path: Path) -> None:
    folder = _write(tmp_path / "ckpt", _card(tmp_path))
    assert Grounder.from_pretrained(
        folder, postprocess={"nms_iou": 0.5}
    ).config.postprocess == PostprocessConfig(top_k=4, nms_iou=0.5)
    with pytest.warns(DeprecationWarning, match="top_k"):
        g = Grounder.from_pretrained(folder, top_k=2, window_stride=4)
    assert g.config.postprocess.top_k == 2 and g.config.stride == 4
    with pytest.raises(TypeError, match="unknown Grounder settings"):
        Grounder.from_pretrained(folder, topk=2)
