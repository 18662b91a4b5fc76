"""The trainer: exact resume, checkpoint folders, the scheduler and the training config."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from _train_world import make_world, tiny_overrides
from safetensors.torch import load_file

from masra.datasets.card import builtin_card_dir
from masra.grounding.checkpoint import load_checkpoint
from masra.grounding.config import TrainConfig, builtin_config_dir, load_train_config
from masra.grounding.train.recipe import run_training
from masra.grounding.train.trainer import build_scheduler


def _metrics(run: Path) -> list[dict[str, object]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("elapsed_s")
    return lines


def test_resume_is_exact(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=16, num_val=6, num_clips=12)
    cfg = load_train_config(
        str(card), None, tiny_overrides(card, epochs=4, eval_every=1, batch_size=6), no_config=True
    )
    full = run_training(cfg, tmp_path / "full")
    part = run_training(cfg, tmp_path / "part", stop_after_epoch=2)
    assert part["epochs_done"] == 2 and len(_metrics(tmp_path / "part")) == 2
    resumed = run_training(cfg, tmp_path / "part", resume=True)
    assert resumed["epochs_done"] == 4 and resumed["steps"] == full["steps"]
    assert _metrics(tmp_path / "part") == _metrics(tmp_path / "full")
    wa = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    wb = load_file(str(tmp_path / "part" / "last" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    oa = load_file(str(tmp_path / "full" / "last" / "optimizer.safetensors"))
    ob = load_file(str(tmp_path / "part" / "last" / "optimizer.safetensors"))
    assert all(torch.equal(oa[k], ob[k]) for k in oa)
    # The weights did change during training (the comparison above is not vacuous).
    first = run_training(cfg, tmp_path / "one", stop_after_epoch=1)
    assert first["steps"] < full["steps"]
    w1 = load_file(str(tmp_path / "one" / "last" / "model.safetensors"))
    assert any(not torch.equal(w1[k], wa[k]) for k in wa)


def test_checkpoint_folder_rebuilds_the_model(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=8, num_val=4)
    cfg = load_train_config(
        str(card), None, tiny_overrides(card, epochs=1, postprocess={"saliency_weight": 0.5}), no_config=True
    )
    summary = run_training(cfg, tmp_path / "run")
    best = tmp_path / "run" / "best"
    # With saliency re-scoring on, the plain decoder ranking is reported beside it.
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert set(line["without_saliency_rescore"]) == {"MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP"}
    assert summary["best_metrics"]["without_saliency_rescore"] == line["without_saliency_rescore"]
    names = {p.name for p in best.iterdir()}
    assert {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"} <= names
    assert "predictions_val.jsonl" in names
    model, config = load_checkpoint(best)
    assert config["dataset"] == "toy" and config["priors"]["source"] == "reference"
    assert config["train"]["epochs"] == 1 and not model.training
    # The model predicts without priors; saved predictions come from these weights.
    rows = [json.loads(x) for x in (best / "predictions_val.jsonl").read_text().splitlines()]
    assert (
        len(rows) == 4 and rows[0]["pred_relevant_windows"][0][2] >= rows[0]["pred_relevant_windows"][-1][2]
    )
    for name in ("train_log.jsonl", "metrics.jsonl", "summary.json"):
        assert (tmp_path / "run" / name).is_file()
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert any(r.get("epoch_end") for r in log)
    assert all("loss" in r and "loss_span_l1" in r for r in log)
    assert any("loss_esta_event" in r and "loss_lrca" in r for r in log)


def test_interval_log_means_span_epoch_boundaries(tmp_path: Path) -> None:
    # 3 steps per epoch, a log line every 2 steps: intervals straddle epochs. Every step is in exactly
    # one interval, so the interval means weighted by their step counts must add up to the epoch means
    # weighted by the steps per epoch (an interval that lost the steps of the previous epoch would not).
    card = make_world(tmp_path / "world", num_train=18, num_val=4)
    cfg = load_train_config(
        str(card),
        None,
        tiny_overrides(card, epochs=2, eval_every=2, batch_size=6, log_every=2),
        no_config=True,
    )
    run_training(cfg, tmp_path / "run")
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    intervals = [r for r in log if not r.get("epoch_end")]
    epochs = [r for r in log if r.get("epoch_end")]
    assert [r["step"] for r in intervals] == [2, 4, 6] and all(r["steps"] == 2 for r in intervals)
    assert len(epochs) == 2
    for key in ("loss", "loss_span_l1", "loss_saliency_rank"):
        by_interval = sum(r[key] * r["steps"] for r in intervals)
        by_epoch = sum(r[key] * 3 for r in epochs)
        assert by_interval == pytest.approx(by_epoch, rel=1e-5)


def test_baseline_run_reads_no_priors(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=8, num_val=4, prior_videos="none")
    cfg = load_train_config(str(card), None, tiny_overrides(card, epochs=1, masra=False), no_config=True)
    summary = run_training(cfg, tmp_path / "run")
    assert summary["priors"] is None and not any(summary["masra_parts"].values())
    log = (tmp_path / "run" / "train_log.jsonl").read_text()
    assert "loss_esta" not in log and "loss_lrca" not in log


def test_scheduler_shapes() -> None:
    model = torch.nn.Linear(2, 2)

    def lrs(**kw: object) -> list[float]:
        cfg = TrainConfig(epochs=4, lr=1.0, **kw)  # type: ignore[arg-type]
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        sched = build_scheduler(opt, cfg, steps_per_epoch=2)
        out = []
        for _ in range(8):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    assert lrs() == [1.0] * 8
    assert lrs(scheduler="step", lr_drop_epoch=2) == [1.0] * 4 + [0.1] * 4
    warm = lrs(warmup_epochs=1)
    assert warm[:3] == [0.5, 1.0, 1.0]
    cos = lrs(scheduler="cosine")
    assert cos[0] == 1.0 and all(a > b for a, b in itertools.pairwise(cos)) and cos[-1] > 0


def test_train_config_validation_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="scheduler 'step' needs lr_drop_epoch"):
        TrainConfig(scheduler="step")
    with pytest.raises(ValueError, match="unknown keys \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="comes from the dataset card"):
        TrainConfig(model={"video_dim": 3})
    with pytest.raises(ValueError, match="masra is false but"):
        TrainConfig(masra=False, model={"use_sora": True})
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nmodel: {hidden_dim: 64}\n")
    cfg = load_train_config("toy", path, {"model.num_queries": 5, "card.root": "/x", "lr": 2e-4})
    assert (cfg.epochs, cfg.lr, cfg.model, cfg.card) == (
        7,
        2e-4,
        {"hidden_dim": 64, "num_queries": 5},
        {"root": "/x"},
    )
    assert cfg.model_switches()["use_dai"] is True
    assert not any(TrainConfig(masra=False).model_switches().values())
    assert TrainConfig(model={"use_sora": False}).model_switches()["use_sora"] is False


@pytest.mark.parametrize("name", sorted(p.stem for p in builtin_config_dir().glob("*.yaml")))
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_train_config(name, builtin_config_dir() / f"{name}.yaml")
    assert cfg.dataset == name


def test_every_shipped_card_has_a_shipped_config() -> None:
    cards = {p.stem for p in builtin_card_dir().glob("*.yaml")}
    configs = {p.stem for p in builtin_config_dir().glob("*.yaml")}
    assert cards == configs and {"qvhighlights", "charades", "tacos", "fixture"} <= cards
    # The two Charades-STA cards read the same dataset: one recipe.
    same = [load_train_config(n, builtin_config_dir() / f"{n}.yaml") for n in ("charades", "charades_jsonl")]
    assert {**same[0].to_dict(), "dataset": ""} == {**same[1].to_dict(), "dataset": ""}
