"""The Accelerate training loop: resident batches, AdamW, periodic evaluation, best/last checkpoints.

Files of a run folder::

    train_log.jsonl   one line per ``log_every`` steps and per epoch: epoch, step, lr, loss (weighted
                      total) and every unweighted named loss as ``loss_<name>`` (means over the interval;
                      interval lines also give ``steps``, the number of steps averaged)
    metrics.jsonl     one line per evaluation: epoch, step, split, elapsed_s and the metrics' ``brief``
    checkpoints/      step-<step>/ checkpoint folders (masra.grounding.train.checkpoints)
    best/ last/       links to the best and the latest checkpoint (best.json / last.json: pointers)
    history.jsonl     one line per start and resume: time, epoch, step, checkpoint, changed config keys
    summary.json      written by :func:`masra.grounding.train.recipe.run_training` at the end
    tensorboard/      trackers

The model and the criterion run as one module (:class:`~masra.grounding.train.step.TrainStep`); what
each step trains on (query rows, prior-only videos, the prior decay) is
:class:`~masra.grounding.train.rows.StepRows`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch import Tensor, nn
from tqdm.auto import tqdm

from masra.grounding.config import TrainConfig
from masra.grounding.data.resident import ResidentSplit
from masra.grounding.infer.decode import predictions_from_outputs
from masra.grounding.losses import weighted_total
from masra.grounding.train.checkpoints import (
    adopt_checkpoint,
    checkpoint_folder,
    checkpoint_staging,
    load_rng_state,
    load_training_state,
    publish_checkpoint,
    save_rng_state,
    save_training_state,
)
from masra.grounding.train.rows import StepRows
from masra.grounding.train.step import TrainStep, build_optimizer, build_scheduler, gather_outputs
from masra.grounding.train.watch import LossWatch

log = logging.getLogger(__name__)


__all__ = ["Scorer", "TrainStep", "Trainer", "build_scheduler"]

_PLAIN_KEYS = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP")

Scorer = Callable[[list[dict[str, Any]], ResidentSplit], dict[str, Any]]
"""(prediction rows, evaluated split) -> the metrics dict with a ``brief`` mapping."""


class Trainer:
    """Trains one model on resident data; see the module docstring for what it writes.

    Args:
        cfg: the training config.
        accelerator: built by the caller (mixed precision, trackers, project dir).
        model / criterion: built by the caller from the model and loss configs.
        train_data / eval_data: resident splits on ``accelerator.device`` (eval may be None).
        scorer: turns prediction rows into metrics (``brief`` keys as the standard tool's).
        run_dir: the run folder.
        checkpoint_config: JSON-able dict stored in every checkpoint's ``config.json``.
        train_rows: (N',) int64 query rows of ``train_data`` that are labelled for this run (the
            label fraction); None uses every query. Prior-only videos are drawn from all of
            ``train_data``'s videos whatever the fraction.
        pseudo_rows: (P,) int64 rows of ``train_data`` that are pseudo-queries (prior events as
            queries), or None. Each step adds ``pseudo_per_process(cfg.pseudo_queries.weight, ...)``
            of them to its labelled queries (:func:`~masra.grounding.data.order.pseudo_step_rows`);
            with no labelled query (``train_rows`` empty) an epoch is a pass over them instead.

    What each step trains on (these rows, prior-only videos, the prior decay) is :attr:`step_rows`
    (:class:`~masra.grounding.train.rows.StepRows`).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        accelerator: Accelerator,
        model: nn.Module,
        criterion: nn.Module,
        train_data: ResidentSplit,
        eval_data: ResidentSplit | None,
        scorer: Scorer,
        run_dir: Path,
        checkpoint_config: dict[str, Any],
        train_rows: Tensor | None = None,
        pseudo_rows: Tensor | None = None,
    ) -> None:
        self.cfg = cfg
        self.acc = accelerator
        self.train_data = train_data
        self.eval_data = eval_data
        self.scorer = scorer
        self.run_dir = Path(run_dir)
        self.checkpoint_config = checkpoint_config
        self.criterion = criterion
        self.weights: dict[str, float] = dict(getattr(criterion, "weights", {}))
        self.step_rows = StepRows(
            cfg,
            train_data,
            criterion=criterion,
            weights=self.weights,
            rank=accelerator.process_index,
            world=accelerator.num_processes,
            train_rows=train_rows,
            pseudo_rows=pseudo_rows,
        )
        self.steps_per_epoch = len(self.step_rows.epoch_batches(0))
        step = TrainStep(model, criterion)
        optimizer = build_optimizer(step, cfg)
        scheduler = build_scheduler(optimizer, cfg, self.steps_per_epoch)
        self.step_module, self.optimizer, self.scheduler = accelerator.prepare(step, optimizer, scheduler)
        self.epoch = 0  # epochs completed
        self.global_step = 0
        # Loss sums of the current log interval; it spans epoch boundaries (log_every need not
        # divide the steps per epoch), so the sums and their step count live on the trainer.
        self._interval_sums: dict[str, Tensor] = {}
        self._interval_steps = 0
        self.loss_watch = LossWatch()  # NaN / Inf losses, read at each log line and epoch end
        self.best_value = -math.inf
        self.best_epoch = -1
        self.stopped_early = False
        self.best_metrics: dict[str, Any] = {}
        self.t_start = time.perf_counter()
        self.elapsed_before = 0.0
        self._last_rows: list[dict[str, Any]] = []  # predictions of the latest evaluation

    # ---- helpers --------------------------------------------------------------------------------
    @property
    def pseudo_per_step(self) -> int:
        """Pseudo-queries each process adds to each step (0: none)."""
        return self.step_rows.pseudo_per_step

    @property
    def model(self) -> nn.Module:
        unwrapped: TrainStep = self.acc.unwrap_model(self.step_module)
        return unwrapped.model

    @property
    def weights_model(self) -> nn.Module:
        """The model whose state is saved: without a ``torch.compile`` wrapper."""
        model = self.model
        inner = getattr(model, "_orig_mod", model)
        assert isinstance(inner, nn.Module)
        return inner

    def _append(self, name: str, record: dict[str, Any]) -> None:
        if self.acc.is_main_process:
            with open(self.run_dir / name, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t_start

    # ---- evaluation -----------------------------------------------------------------------------
    def predict_outputs(self, data: ResidentSplit) -> tuple[Tensor, Tensor, Tensor]:
        """Model outputs for every query of ``data`` (see :func:`gather_outputs`)."""
        return gather_outputs(self.model, self.acc, data, self.cfg.eval_batch_size)

    def _rows(
        self, outputs: tuple[Tensor, Tensor, Tensor], data: ResidentSplit, plain: bool = False
    ) -> list[dict[str, Any]]:
        """Prediction rows with the configured post-processing (``plain``: the decoder ranking alone)."""
        pp = self.cfg.postprocess
        if plain:
            pp = replace(pp, saliency_weight=0.0, proposals=False)
        return predictions_from_outputs(*outputs, data.meta, pp)

    def predict(self, data: ResidentSplit) -> list[dict[str, Any]]:
        """Prediction rows for every query of ``data`` with the configured post-processing."""
        return self._rows(self.predict_outputs(data), data)

    def evaluate(self) -> dict[str, Any]:
        """Score the eval split; append one line to metrics.jsonl; returns the full metrics dict."""
        assert self.eval_data is not None
        outputs = self.predict_outputs(self.eval_data)
        pp = self.cfg.postprocess
        rows = self._rows(outputs, self.eval_data)
        metrics = self.scorer(rows, self.eval_data)
        brief = metrics["brief"]
        record = {
            "epoch": self.epoch,
            "step": self.global_step,
            "split": self.cfg.eval_split,
            "elapsed_s": round(self._elapsed(), 3),
            **brief,
        }
        if pp.saliency_weight > 0 or pp.proposals:  # also the plain decoder ranking, for comparison
            plain = self.scorer(self._rows(outputs, self.eval_data, plain=True), self.eval_data)["brief"]
            record["without_saliency_rescore"] = {k: plain[k] for k in _PLAIN_KEYS if k in plain}
            metrics["without_saliency_rescore"] = record["without_saliency_rescore"]
        self._append("metrics.jsonl", record)
        self.acc.log(
            {f"eval/{k}": v for k, v in brief.items() if isinstance(v, int | float)}, step=self.global_step
        )
        self._last_rows = rows
        return metrics

    # ---- checkpoints ----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.global_step,
            "best_value": self.best_value if math.isfinite(self.best_value) else None,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "elapsed_s": self._elapsed(),
            "num_processes": self.acc.num_processes,
        }

    def _unwrapped(self, name: str) -> Any:
        """The optimizer or scheduler itself, without Accelerate's wrapper."""
        obj = getattr(self, name)
        return getattr(obj, name, obj)

    def save(self, names: tuple[str, ...], metrics: dict[str, Any] | None = None) -> Path:
        """Write ``{run}/checkpoints/step-<step>`` and point ``names`` (``best``, ``last``) at it.

        All processes write their RNG state; the main process the rest, then publishes the folder
        (:func:`~masra.grounding.train.checkpoints.publish_checkpoint`). Returns the step folder.
        """
        staging = checkpoint_staging(self.run_dir, self.global_step)
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.acc.wait_for_everyone()
        save_rng_state(staging, self.acc.process_index)
        if self.acc.is_main_process:
            config = {
                **self.checkpoint_config,
                "epoch": self.epoch,
                "step": self.global_step,
                "metrics": metrics or {},
            }
            save_training_state(
                staging,
                model=self.weights_model,
                criterion=self.criterion,
                optimizer=self._unwrapped("optimizer"),
                scheduler=self._unwrapped("scheduler"),
                config=config,
                state=self._state(),
            )
            if "best" in names and self._last_rows:
                with open(staging / f"predictions_{self.cfg.eval_split}.jsonl", "w", encoding="utf-8") as f:
                    for row in self._last_rows:
                        f.write(json.dumps(row) + "\n")
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            publish_checkpoint(staging, self.run_dir, self.global_step, names)
        self.acc.wait_for_everyone()
        return checkpoint_folder(self.run_dir, self.global_step)

    def resume(self, folder: Path) -> None:
        """Continue from a checkpoint folder written by :meth:`save` (exactly, at an epoch boundary)."""
        state = load_training_state(
            folder,
            model=self.weights_model,
            criterion=self.criterion,
            optimizer=self._unwrapped("optimizer"),
            scheduler=self._unwrapped("scheduler"),
        )
        if state.get("num_processes", 1) != self.acc.num_processes and self.acc.is_main_process:
            log.warning(
                "resuming a %d-process run with %d processes: the data order differs from the original",
                state.get("num_processes", 1),
                self.acc.num_processes,
            )
        load_rng_state(folder, self.acc.process_index)
        self.epoch = int(state["epoch"])
        self.global_step = int(state["step"])
        self.best_value = -math.inf if state.get("best_value") is None else float(state["best_value"])
        self.best_epoch = int(state.get("best_epoch", -1))
        self.best_metrics = dict(state.get("best_metrics") or {})
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        if self.acc.is_main_process:  # best / last name this checkpoint if a kill came before they moved
            adopt_checkpoint(self.run_dir, folder, is_best=self.best_epoch == self.epoch)
        self.acc.wait_for_everyone()
        log.info("resumed from %s at epoch %d (step %d)", folder, self.epoch, self.global_step)

    # ---- training -------------------------------------------------------------------------------
    def _train_epoch(self, progress: tqdm) -> dict[str, float]:
        cfg = self.cfg
        module = self.step_module
        module.train()
        epoch_sums: dict[str, Tensor] = {}
        count = 0
        batches = self.step_rows.epoch_batches(self.epoch)
        for idx in batches:
            batch, weights = self.step_rows.batch(idx, self.global_step)
            _, losses = module(batch)
            total = weighted_total(losses, weights)
            self.loss_watch.record(total, self.global_step + 1, batch)
            self.acc.backward(total)
            if cfg.grad_clip > 0:
                self.acc.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.global_step += 1
            count += 1
            sums = self._interval_sums
            for name, value in [("loss", total), *((f"loss_{k}", v) for k, v in losses.items())]:
                v = value.detach().float()
                sums[name] = sums.get(name, 0.0) + v  # type: ignore[assignment, operator]
                epoch_sums[name] = epoch_sums.get(name, 0.0) + v  # type: ignore[assignment, operator]
            self._interval_steps += 1
            progress.update(1)
            if self.global_step % cfg.log_every == 0:
                self._raise_if_non_finite()
                n_int = self._interval_steps
                record = {k: float(v) / n_int for k, v in sums.items()}
                self._interval_sums, self._interval_steps = {}, 0
                lr = self.scheduler.get_last_lr()[0]
                self._append(
                    "train_log.jsonl",
                    {"epoch": self.epoch, "step": self.global_step, "lr": lr, "steps": n_int, **record},
                )
                self.acc.log(
                    {f"train/{k}": v for k, v in record.items()} | {"train/lr": lr}, step=self.global_step
                )
                progress.set_postfix(loss=f"{record['loss']:.3f}")
        self._raise_if_non_finite()  # before the epoch's evaluation and checkpoints
        return {k: float(v) / max(count, 1) for k, v in epoch_sums.items()}

    def _raise_if_non_finite(self) -> None:
        """Stop training if a loss since the last check was NaN or Inf (see :class:`LossWatch`)."""
        self.loss_watch.check(self.acc, self.epoch, self.run_dir)

    def fit(self, *, stop_after_epoch: int | None = None) -> dict[str, Any]:
        """Train to ``cfg.epochs`` (or stop, as if interrupted, once ``stop_after_epoch`` epochs are done).

        Returns ``{"best_metric", "best_value", "best_epoch", "best_metrics", "epochs_done", "steps",
        "best_step", "stopped_early", "train_seconds"}``. With ``early_stop_patience`` it stops once that
        many evaluations passed without a new best (``stopped_early``).

        Raises ValueError, before any step, when ``eval_split`` is set but holds no queries, and
        FloatingPointError when a training loss is NaN or Inf (see ``_raise_if_non_finite``).
        """
        cfg = self.cfg
        if cfg.eval_split is not None and (self.eval_data is None or len(self.eval_data) == 0):
            # An empty eval split would train and report a best of nan; say so before any step.
            raise ValueError(
                f"eval split {cfg.eval_split!r} holds no queries: fix its annotation file, or set "
                "eval_split: null to train without evaluation"
            )
        self.t_start = time.perf_counter()
        total_steps = cfg.epochs * self.steps_per_epoch
        progress = tqdm(
            total=total_steps,
            initial=self.global_step,
            desc="train",
            unit="step",
            disable=not self.acc.is_main_process,
            dynamic_ncols=True,
        )
        while self.epoch < cfg.epochs:
            if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
                break
            if self._patience_spent():  # checked here too, so a resumed run that had stopped stays stopped
                log.info(
                    "early stop after epoch %d: %s has not improved for %d evaluations (best %.2f at epoch %d)",
                    self.epoch, cfg.best_metric, cfg.early_stop_patience, self.best_value, self.best_epoch,
                )  # fmt: skip
                self.stopped_early = True
                break
            epoch_losses = self._train_epoch(progress)
            self.epoch += 1
            lr = self.scheduler.get_last_lr()[0]
            self._append(
                "train_log.jsonl",
                {"epoch": self.epoch, "step": self.global_step, "lr": lr, "epoch_end": True, **epoch_losses},
            )
            last = self.epoch == cfg.epochs
            if self.epoch % cfg.eval_every == 0 or last:
                self._eval_and_keep()
        progress.close()
        return {
            "best_metric": cfg.best_metric,
            "best_value": self.best_value if math.isfinite(self.best_value) else None,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "epochs_done": self.epoch,
            "steps": self.global_step,
            "best_step": self.best_epoch * self.steps_per_epoch if self.best_epoch >= 0 else None,
            "stopped_early": self.stopped_early,
            "train_seconds": round(self._elapsed(), 3),
        }

    def _patience_spent(self) -> bool:
        """Whether ``early_stop_patience`` evaluations have passed since the best one (resume-safe:
        derived from the epoch of the best checkpoint, which the run state keeps)."""
        patience = self.cfg.early_stop_patience
        if patience is None or self.eval_data is None or self.best_epoch < 0:
            return False
        if self.epoch < self.cfg.early_stop_min_epochs:
            return False
        return self.epoch - self.best_epoch >= patience * self.cfg.eval_every

    def _eval_and_keep(self) -> None:
        if self.eval_data is None:
            self.best_epoch = self.epoch
            self.save(("best", "last"))
            return
        metrics = self.evaluate()
        brief = metrics["brief"]
        if self.cfg.best_metric not in brief:
            raise KeyError(f"best_metric {self.cfg.best_metric!r} is not among the metrics {sorted(brief)}")
        value = float(brief[self.cfg.best_metric])
        log.info(
            "epoch %d: %s",
            self.epoch,
            ", ".join(f"{k} {v:.2f}" for k, v in brief.items() if isinstance(v, int | float)),
        )
        names: tuple[str, ...] = ("last",)
        if value > self.best_value:
            self.best_value, self.best_epoch, self.best_metrics = value, self.epoch, dict(brief)
            if "without_saliency_rescore" in metrics:
                self.best_metrics["without_saliency_rescore"] = metrics["without_saliency_rescore"]
            names = ("best", "last")
        self.save(names, brief)
