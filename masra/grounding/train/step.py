"""One training step's module and schedule, and the evaluation pass the trainer runs.

:class:`TrainStep` holds the model and the criterion in one module, so that distributed training
synchronises every parameter; the criterion runs in float32 with autocast off, whatever the mixed
precision. :func:`build_scheduler` is the learning-rate schedule; :func:`gather_outputs` the
evaluation forward pass over a resident split, sharded over processes.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from accelerate import Accelerator
from torch import Tensor, nn

from masra.grounding.config import TrainConfig
from masra.grounding.data.batch import Batch, PriorBatch
from masra.grounding.data.order import epoch_batches
from masra.grounding.data.resident import ResidentSplit
from masra.grounding.infer.decode import foreground_prob
from masra.grounding.losses.criterion import CRITERION_INPUTS

__all__ = [
    "PRIOR_HEADS",
    "TrainStep",
    "build_optimizer",
    "build_scheduler",
    "gather_outputs",
    "prior_weight_scale",
]


def _to_float(x: Any) -> Any:
    """Floating tensors (nested in dicts/lists) to float32."""
    if isinstance(x, Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _to_float(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_to_float(v) for v in x)
    return x


def _float_priors(p: PriorBatch | None) -> PriorBatch | None:
    if p is None:
        return None
    # Only the float fields change; masks (and any field added later) are carried over as they are.
    return replace(
        p, event_spans=p.event_spans.float(), event_emb=p.event_emb.float(), caption_emb=p.caption_emb.float()
    )


# The model outputs of the prior heads; prior-only videos append their rows to these.
PRIOR_HEADS = ("esta_clip", "sge_pred", "lrca_clip")


class TrainStep(nn.Module):
    """Model + criterion in one module: ``forward(batch) -> (outputs, unweighted losses)``."""

    def __init__(self, model: nn.Module, criterion: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, batch: Batch) -> tuple[dict[str, Any], dict[str, Tensor]]:
        out = self.model(batch.video, batch.video_mask, batch.text, batch.text_mask)
        priors = batch.priors
        extra = batch.prior_videos
        if extra is not None and priors is not None:
            # Videos without a query: their prior heads' rows join the batch's, so the prior losses
            # see both (and the extra events are negatives of the batch's, and the other way round).
            heads: dict[str, Tensor] = self.model.video_semantics(extra.video, extra.video_mask)  # type: ignore[operator]
            out = dict(out)
            for key in PRIOR_HEADS:
                if key in heads and key in out:
                    out[key] = torch.cat([out[key], heads[key]])
            priors = PriorBatch.cat(priors, batch.video_mask, extra.priors, extra.video_mask)
        # The criterion runs in float32 with autocast off (its forward says so); only what it reads is
        # cast (under bf16 the other outputs would cost a cast each).
        fbatch = replace(batch, priors=_float_priors(priors), prior_videos=None)
        losses = self.criterion(_to_float({k: v for k, v in out.items() if k in CRITERION_INPUTS}), fbatch)
        return out, losses


def build_optimizer(step: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with ``cfg.weight_decay`` on weight matrices, none on biases and norms."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in step.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then constant / cosine to 0 / x0.1 at ``lr_drop_epoch`` (stepped per step)."""
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    drop = (cfg.lr_drop_epoch or 0) * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if cfg.scheduler == "step" and step >= drop:
            return 0.1
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def prior_weight_scale(step: int, decay_steps: int) -> float:
    """Factor on the prior-loss weights at optimiser step ``step`` (0-based): 1 with ``decay_steps`` 0,
    else a half-cosine from 1 at step 0 to 0 at ``decay_steps`` and 0 after.

    >>> prior_weight_scale(0, 100), prior_weight_scale(50, 100), prior_weight_scale(100, 100)
    (1.0, 0.5, 0.0)
    """
    if decay_steps <= 0:
        return 1.0
    if step >= decay_steps:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))


def gather_outputs(
    model: nn.Module, acc: Accelerator, data: ResidentSplit, batch_size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Model outputs for every query of ``data``, sharded over processes and gathered in order.

    Returns foreground probabilities (N, Q), spans (N, Q, 2) and saliency (N, L), on the device.
    """
    was_training = model.training
    model.eval()
    probs, spans, sals = [], [], []
    world = acc.num_processes
    batches = epoch_batches(
        len(data),
        max(1, batch_size // world) * world,
        seed=0,
        epoch=0,
        rank=acc.process_index,
        world=world,
        shuffle=False,
    )
    with torch.no_grad():
        for idx in batches:
            b = data.batch(idx, with_priors=False)
            with acc.autocast():
                out = model(b.video, b.video_mask, b.text, b.text_mask)
            probs.append(acc.gather_for_metrics(foreground_prob(out["pred_logits"]).float()))
            spans.append(acc.gather_for_metrics(out["pred_spans"].float()))
            sals.append(acc.gather_for_metrics(out["saliency"].float()))
    model.train(was_training)
    n = len(data)
    prob, span, sal = (torch.cat(x)[:n] for x in (probs, spans, sals))
    return prob, span, sal
