"""One training run end to end: card -> feature store -> resident data (+ priors) -> Trainer -> summary.

:func:`run_training` is what ``masra train`` and ``masra ablate`` call. It writes into the run folder
(see :mod:`masra.grounding.train.trainer`) and ``summary.json``::

    {"dataset", "masra_parts", "priors": {"run", "encoder", "source", "videos"} | null,
     "best_metric", "best_value", "best_epoch", "best_metrics", "position_baseline",
     "r1_ratio_to_position_baseline", "train_seconds", "epochs_done", "data": {split reports},
     "pseudo_queries": {"run", "source", "encoder", "labelled_queries", "pseudo_queries",
                        "per_step", "priors_only"}   (only with pseudo-queries on)}

With ``pseudo_queries.weight > 0`` the events of the prior run ``priors_run`` become training
queries (:mod:`masra.grounding.data.pseudo`); with no labelled query (``label_fraction: 0``, or a
card without an annotation file for ``train_split``, whose training videos are then the prior run's
videos that have features) training runs from the priors alone and says so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from masra.datasets.card import DatasetCard, load_card
from masra.datasets.readers import load_queries
from masra.datasets.store import FeatureStore
from masra.datasets.store_build import build_feature_store
from masra.grounding.checkpoint import read_checkpoint_config
from masra.grounding.config import LossConfig, ModelConfig, TrainConfig
from masra.grounding.data.pseudo import PseudoQuerySet
from masra.grounding.data.resident import ResidentSplit, build_split, label_subset
from masra.grounding.infer.evaluate import score_predictions
from masra.grounding.losses import build_criterion
from masra.grounding.losses.criterion import PRIOR_PARTS  # the parts whose losses read priors
from masra.grounding.model import build_model
from masra.grounding.train.checkpoints import find_resume_checkpoint
from masra.grounding.train.edges import resolve_edge_share
from masra.grounding.train.position_baseline import position_baselines
from masra.grounding.train.sources import log_pseudo, pseudo_summary, run_pseudo_queries, train_sources
from masra.grounding.train.trainer import Scorer, Trainer
from masra.priors.table import PriorTable, read_prior_table

log = logging.getLogger(__name__)

__all__ = ["PRIOR_PARTS", "RESUME_SAFE_KEYS", "build_configs", "resume_config_changes", "run_training"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}
_RUN_FILES = ("train_log.jsonl", "metrics.jsonl", "summary.json", "history.jsonl", "best.json", "last.json")
_RUN_DIRS = ("best", "last", "checkpoints", ".best.old", ".last.old", ".best.tmp", ".last.tmp", "tensorboard")
# Config keys a resumed run may change (anything under postprocess. too): they do not alter the
# optimisation that the checkpoint continues. ``epochs`` may not go below the epochs already done.
RESUME_SAFE_KEYS = (
    "epochs",
    "eval_every",
    "log_every",
    "eval_batch_size",
    "cpu_threads",
    "compile",
    "compile_mode",
    "pad_to_max",
    "early_stop_patience",
    "early_stop_min_epochs",
)
_RESUME_SAFE_PREFIXES = ("postprocess.",)


def build_configs(
    cfg: TrainConfig, card: DatasetCard, prior_dim: int | None
) -> tuple[ModelConfig, LossConfig]:
    """Model and loss configs: the card's dims, the MASRA switches, then ``cfg.model`` / ``cfg.loss``."""
    model = {
        **cfg.model,
        **cfg.model_switches(),
        "video_dim": card.video_dim,
        "text_dim": card.text_features.dim,
    }
    if prior_dim is not None:
        if "prior_dim" in cfg.model and int(cfg.model["prior_dim"]) != prior_dim:
            raise ValueError(
                f"model.prior_dim is {cfg.model['prior_dim']} but the prior embeddings have dim {prior_dim}"
            )
        model["prior_dim"] = prior_dim
    return ModelConfig.from_dict(model), LossConfig.from_dict(dict(cfg.loss))


def _prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool, is_main: bool) -> Path | None:
    """Check the run folder for the mode asked; returns the checkpoint to resume from (or None).

    A fresh run refuses a folder that already holds a run unless ``overwrite``, which deletes it.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run, or replace it")
    if resume:
        folder = find_resume_checkpoint(run_dir)
        if folder is None:
            raise FileNotFoundError(
                f"--resume: no complete checkpoint in {run_dir} (no checkpoints/step-* or last/ folder)"
            )
        return folder
    held = [n for n in (*_RUN_FILES, *_RUN_DIRS) if (run_dir / n).exists() or (run_dir / n).is_symlink()]
    held = [n for n in held if n != "tensorboard"]
    if held and not overwrite:
        raise ValueError(
            f"{run_dir} already holds a run ({', '.join(held)}): pass --resume to continue it, "
            "--overwrite to delete it and start afresh, or another --out"
        )
    if is_main:
        if held:
            log.warning("%s holds an earlier run; --overwrite: its logs and checkpoints are deleted", run_dir)
        for n in (*_RUN_FILES, *_RUN_DIRS):
            p = run_dir / n
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
    return None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _config_view(train: dict[str, Any], model: dict[str, Any], loss: dict[str, Any]) -> dict[str, Any]:
    """One flat JSON-normalised mapping of a run's settings: the train config with the resolved model
    and loss configs in place of its ``model`` / ``loss`` overrides."""
    view = _flatten({**train, "model": model, "loss": loss})
    normalised: dict[str, Any] = json.loads(json.dumps(view, default=str))
    return normalised


def resume_config_changes(
    checkpoint: Path, cfg: TrainConfig, model_cfg: ModelConfig, loss_cfg: LossConfig
) -> dict[str, list[Any]]:
    """The allowed changes ``{key: [old, new]}`` of a resumed run's config against its checkpoint's.

    Raises ValueError listing every difference (``key: old -> new``) when any key outside
    :data:`RESUME_SAFE_KEYS` / ``postprocess.*`` differs, or ``epochs`` is below the epochs done.
    """
    saved = read_checkpoint_config(checkpoint)
    old_train = dict(saved.get("train") or {})
    old_model = dict(saved.get("model") or {})
    old_loss = dict(saved.get("loss") or {})
    try:  # fill fields added since the checkpoint was written with their defaults
        old_train = TrainConfig.from_dict(old_train).to_dict()
        old_model = ModelConfig.from_dict(old_model).to_dict()
        old_loss = LossConfig.from_dict(old_loss).to_dict()
    except (TypeError, ValueError):
        pass
    new_loss = loss_cfg.to_dict()
    if new_loss.get("esta_edge_share") == "auto":  # resolved once the data is read: checked then
        new_loss["esta_edge_share"] = old_loss.get("esta_edge_share", "auto")
    old = _config_view(old_train, old_model, old_loss)
    new = _config_view(cfg.to_dict(), model_cfg.to_dict(), new_loss)
    missing = "(unset)"
    changes = {
        k: [old.get(k, missing), new.get(k, missing)]
        for k in sorted(set(old) | set(new))
        if old.get(k, missing) != new.get(k, missing)
    }
    done = int(saved.get("epoch") or 0)
    refused = {
        k: v
        for k, v in changes.items()
        if not (k in RESUME_SAFE_KEYS or k.startswith(_RESUME_SAFE_PREFIXES))
        or (k == "epochs" and isinstance(v[1], int) and v[1] < done)
    }
    if refused:
        lines = "\n".join(f"  {k}: {json.dumps(v[0])} -> {json.dumps(v[1])}" for k, v in refused.items())
        raise ValueError(
            f"--resume: the config differs from that of the checkpoint {checkpoint} in settings a "
            f"resumed run cannot change:\n{lines}\nOnly {', '.join(RESUME_SAFE_KEYS)} and postprocess.* may "
            f"change on resume (epochs not below the {done} already done). Resume with the run's "
            "settings, or start a new run (another --out, or --overwrite)"
        )
    return changes


def _append_history(run_dir: Path, record: dict[str, Any]) -> None:
    line = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **record}
    with open(run_dir / "history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line, default=str) + "\n")


def _trim_logs(run_dir: Path, step: int) -> None:
    """Drop the lines an interrupted run wrote after the checkpoint's ``step`` from the run's logs, so
    that the resumed run does not write them a second time."""
    for name in ("train_log.jsonl", "metrics.jsonl"):
        path = run_dir / name
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = []
        for line in lines:
            try:
                if int(json.loads(line)["step"]) <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):  # a line cut by the kill
                continue
        if len(kept) == len(lines):
            continue
        tmp = run_dir / f".{name}.tmp"
        tmp.write_text("".join(f"{x}\n" for x in kept), encoding="utf-8")
        os.replace(tmp, path)
        log.info(
            "%s: dropped %d line(s) written after step %d by the interrupted run",
            path,
            len(lines) - len(kept),
            step,
        )


def _scorer(card: DatasetCard) -> Scorer:
    """Metrics of prediction rows against the split's (uncut) ground truth, scored as the card says
    (:func:`~masra.grounding.infer.evaluate.card_scoring`, as every inference entry scores)."""

    def score(rows: list[dict[str, Any]], data: ResidentSplit) -> dict[str, Any]:
        return score_predictions(rows, data.queries, card)

    return score


def run_training(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    store_dir: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train as ``cfg`` says into ``run_dir``; returns the summary (also written to summary.json).

    A fresh run refuses a ``run_dir`` that holds a run unless ``overwrite``; ``resume`` continues
    from its newest complete checkpoint and refuses a config that changed in a key outside
    :data:`RESUME_SAFE_KEYS` (see :func:`resume_config_changes`).
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    card = load_card(cfg.dataset, cfg.card)
    mixed = cfg.resolved_mixed_precision(torch.cuda.is_available())
    acc = Accelerator(
        cpu=not torch.cuda.is_available(),  # lets `accelerate launch --multi_gpu` run gloo processes on CPU
        mixed_precision=mixed,
        log_with="tensorboard",
        project_dir=str(run_dir),
        step_scheduler_with_optimizer=False,
    )
    if not acc.is_main_process:  # one copy of every log line
        logging.getLogger("masra").setLevel(logging.WARNING)
    resume_from = _prepare_run_dir(run_dir, resume, overwrite, acc.is_main_process)
    acc.wait_for_everyone()
    set_seed(cfg.seed)
    if cfg.cpu_threads is not None and acc.device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)

    sources = train_sources(cfg, card)  # labelled queries, or the prior videos of a card without them
    train_q = sources.queries
    splits = [cfg.train_split] if sources.labelled_split else []
    splits += [cfg.eval_split] if cfg.eval_split else []
    with acc.main_process_first():
        named = Path(store_dir) if store_dir else None  # a store the user named is used, never rebuilt
        store = FeatureStore.open(
            build_feature_store(
                card, splits, named, reuse_only=named is not None, videos=sources.store_videos
            )
        )
    eval_q = load_queries(card, cfg.eval_split)[0] if cfg.eval_split else []
    if cfg.eval_split and not eval_q:  # would train and report a best of nan: say so before any work
        raise ValueError(
            f"{card.annotation_path(cfg.eval_split)}: eval split {cfg.eval_split!r} holds no queries; fix "
            "the file, or set eval_split: null to train without evaluation"
        )

    switches = cfg.model_switches()
    needs_priors = any(switches[f"use_{p}"] for p in PRIOR_PARTS)
    priors: PriorTable | None = None
    if needs_priors:
        priors = read_prior_table(card.prior_dir, cfg.priors_run, cfg.priors_encoder)
        log.info(
            "training with priors %r (source=%s, encoder %s)", cfg.priors_run, priors.source, priors.encoder
        )
    else:
        log.info("training without priors (%s)", "baseline" if not cfg.masra else "no prior-reading part on")
    model_cfg, loss_cfg = build_configs(cfg, card, priors.dim if priors is not None else None)
    changes = resume_config_changes(resume_from, cfg, model_cfg, loss_cfg) if resume_from is not None else {}

    pseudo: PseudoQuerySet | None = None
    if cfg.pseudo_queries.enabled:
        with acc.main_process_first():  # the main process encodes the texts on a cache miss
            pseudo = run_pseudo_queries(cfg, card, sources)

    max_clips = cfg.max_clips or card.max_clips
    dtype = _DTYPES[mixed]
    common = {
        "max_clips": max_clips,
        "max_text_len": cfg.max_text_len,
        "dtype": dtype,
        "device": acc.device,
        "pad_to_max": cfg.pad_to_max,
    }
    train_data = build_split(
        card,
        train_q if cfg.label_fraction > 0 else [],  # label_fraction 0: pseudo-queries alone
        store,
        priors=priors,
        prior_dim=model_cfg.prior_dim,
        allow_partial_priors=cfg.allow_partial_priors,
        drop_unlabelled=True,
        name=cfg.train_split,
        pseudo=pseudo,
        **common,  # type: ignore[arg-type]
    )
    eval_data = build_split(card, eval_q, store, name=cfg.eval_split, **common) if eval_q else None  # type: ignore[arg-type]

    train_rows = None
    pseudo_rows = None
    if pseudo is not None:  # the pseudo-queries are the rows after the labelled ones
        pseudo_rows = torch.arange(train_data.num_labelled, len(train_data))
        train_rows = torch.arange(train_data.num_labelled)
    if 0 < cfg.label_fraction < 1.0:
        train_rows = label_subset(train_data.num_labelled, cfg.label_fraction, cfg.seed)
        log.info(
            "label fraction %.3g: %d of %d train queries labelled; priors of all %d train videos used",
            cfg.label_fraction,
            len(train_rows),
            train_data.num_labelled,
            train_data.num_videos,
        )
    loss_cfg = resolve_edge_share(
        loss_cfg,
        train_data,
        train_rows,
        resumed=read_checkpoint_config(resume_from).get("loss") if resume_from is not None else None,
    )
    scorer = _scorer(card)
    baseline = None
    if eval_data is not None:
        baseline = position_baselines(  # without train labels: the pseudo-queries' windows
            train_q or (pseudo.queries if pseudo is not None else []),
            eval_data.queries,
            lambda rows: scorer(rows, eval_data),
            clip_len=card.clip_len,
        )

    model = build_model(model_cfg)
    criterion = build_criterion(loss_cfg, model_cfg)
    if cfg.compile:
        model = torch.compile(model, mode=cfg.compile_mode)  # type: ignore[assignment]
    prior_info = (
        None
        if priors is None
        else {
            "run": cfg.priors_run,
            "encoder": priors.encoder,
            "source": priors.source,
            "videos": len(priors),
        }
    )
    checkpoint_config = {
        "dataset": card.name,
        "model": model_cfg.to_dict(),
        "loss": loss_cfg.to_dict(),
        "train": cfg.to_dict(),
        "priors": prior_info,
    }
    pseudo_info = None
    if pseudo is not None:
        labelled = len(train_rows) if train_rows is not None else train_data.num_labelled
        pseudo_info = pseudo_summary(cfg, sources, pseudo, labelled, train_data.num_pseudo)
        checkpoint_config["pseudo_queries"] = pseudo_info
    trainer = Trainer(
        cfg,
        accelerator=acc,
        model=model,
        criterion=criterion,
        train_data=train_data,
        eval_data=eval_data,
        scorer=scorer,
        run_dir=run_dir,
        checkpoint_config=checkpoint_config,
        train_rows=train_rows,
        pseudo_rows=pseudo_rows,
    )
    if pseudo_info is not None:
        pseudo_info["per_step"] = trainer.pseudo_per_step * acc.num_processes
        log_pseudo(cfg, card, sources, pseudo_info)
    if resume_from is not None:
        trainer.resume(resume_from)
        if acc.is_main_process:
            _trim_logs(run_dir, trainer.global_step)
            for key, (before, after) in changes.items():
                log.info("resume: %s changed from %s to %s (recorded in history.jsonl)", key, before, after)
    if acc.is_main_process:
        _append_history(
            run_dir,
            {
                "event": "resume" if resume_from is not None else "start",
                "epoch": trainer.epoch,
                "step": trainer.global_step,
                "checkpoint": None if resume_from is None else os.path.relpath(resume_from, run_dir),
                "changed": changes,
            },
        )
    tracker_cfg = {k: v for k, v in cfg.to_dict().items() if isinstance(v, int | float | str | bool)}
    # A resumed run hides the events a killed run logged past its checkpoint (TensorBoard's purge_step),
    # so each step shows once; the writer flushes every 10 s, so a kill loses little.
    tb_kwargs: dict[str, Any] = {"flush_secs": 10}
    if resume_from is not None:
        tb_kwargs["purge_step"] = trainer.global_step + 1
    acc.init_trackers("tensorboard", config=tracker_cfg, init_kwargs={"tensorboard": tb_kwargs})
    log.info(
        "training %s: %d train queries (%d steps/epoch), %d eval queries, parts %s, %s precision, %d process(es)",
        card.name,
        len(train_data),
        trainer.steps_per_epoch,
        len(eval_data) if eval_data else 0,
        model_cfg.masra_parts,
        mixed,
        acc.num_processes,
    )
    result = trainer.fit(stop_after_epoch=stop_after_epoch)
    acc.end_training()

    summary: dict[str, Any] = {
        "dataset": card.name,
        "masra_parts": model_cfg.masra_parts,
        "priors": prior_info,
        **({"pseudo_queries": pseudo_info} if pseudo_info is not None else {}),
        **result,
        "position_baseline": baseline,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "data": {
            "train": train_data.report.to_dict(),
            "eval": eval_data.report.to_dict() if eval_data else None,
        },
    }
    model_r1 = (result.get("best_metrics") or {}).get("MR-full-R1@0.5")
    base_r1 = baseline["best_brief"].get("MR-full-R1@0.5") if baseline else None
    summary["r1_ratio_to_position_baseline"] = (
        round(float(model_r1) / float(base_r1), 3) if model_r1 is not None and base_r1 else None
    )
    if acc.is_main_process:
        with open(run_dir / "summary.json", "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        log.info(
            "done in %.1f s: best %s %.2f at epoch %d; val R1@0.5 %.2f vs position-only baseline %.2f (%s)",
            summary["wall_seconds"],
            cfg.best_metric,
            result["best_value"] if result["best_value"] is not None else float("nan"),
            result["best_epoch"],
            float(model_r1) if model_r1 is not None else float("nan"),
            float(base_r1) if base_r1 is not None else float("nan"),
            baseline["best"] if baseline else "-",
        )
    return summary
