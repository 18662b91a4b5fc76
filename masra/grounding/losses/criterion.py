"""The set criterion: named, unweighted losses of the grounding model plus their weights.

``criterion(outputs, batch)`` returns a dict of scalar losses; ``criterion.weights`` maps every name
it can return to its weight and :func:`weighted_total` combines them. Names:

* ``span_l1``, ``span_giou``, ``label``: matched-moment losses (Hungarian matching per decoder layer);
  the intermediate layers give ``span_l1_0``, ``span_giou_0``, ``label_0``, ``span_l1_1``, ...
* ``saliency_margin``, ``saliency_rank`` and, in training mode (``saliency_neg`` present),
  ``saliency_neg``.
* MASRA prior losses, only when the batch carries priors and the part is on: ``esta_event`` and
  ``esta_clip`` (ESTA), ``sge`` (SGE), ``lrca`` (LRCA). Videos with ``has_prior`` False are masked
  out of them; when no video of the batch has priors they are exactly 0 (still attached to the graph
  so every head receives a gradient, which distributed training needs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masra.grounding.config import LossConfig, ModelConfig
from masra.grounding.data.batch import Batch, host_to_device
from masra.grounding.losses.esta import EstaTargets, edge_clips, esta_terms, event_membership
from masra.grounding.losses.lrca import lrca_loss
from masra.grounding.losses.matcher import HungarianMatcher, MatchIndices, build_matcher
from masra.grounding.losses.saliency import (
    negative_pair_loss,
    saliency_margin_loss,
    saliency_rank_contrastive_loss,
)
from masra.grounding.spans import paired_generalized_iou, span_cxw_to_xx

__all__ = ["PRIOR_LOSSES", "PRIOR_PARTS", "PriorLoss", "SetCriterion", "build_criterion", "weighted_total"]

Outputs = dict[str, Any]
_MATCHED = ("span_l1", "span_giou", "label")


@dataclass(frozen=True)
class PriorLoss:
    """One prior loss: the MASRA part whose switch turns it on, and the model output it reads."""

    part: str
    reads: str


PRIOR_LOSSES: dict[str, PriorLoss] = {
    "esta_event": PriorLoss("esta", "esta_clip"),
    "esta_clip": PriorLoss("esta", "esta_clip"),
    "sge": PriorLoss("sge", "sge_pred"),
    "lrca": PriorLoss("lrca", "lrca_clip"),
}
"""Every prior loss, in the order they are computed and logged; weighted by ``LossConfig.w_<name>``."""

PRIOR_PARTS = tuple(dict.fromkeys(spec.part for spec in PRIOR_LOSSES.values()))
"""The MASRA parts whose losses read priors (a run with none of them on reads no priors)."""


@dataclass
class _Matched:
    """Matched pairs of one decoder layer, flattened over the batch.

    Attributes: batch_idx / query_idx (M,) device indices of the matched queries; pred (M, 2) and
    target (M, 2) (center, width) in float32; num_spans: the span losses' normaliser, see
    :func:`_num_spans` (a float on one process, a 0-d device tensor under torch.distributed).
    """

    batch_idx: Tensor
    query_idx: Tensor
    pred: Tensor
    target: Tensor
    num_spans: float | Tensor


def _num_spans(count: int, device: torch.device) -> float | Tensor:
    """The number of target spans the span losses divide by, at least 1.

    On one process it is the batch's own ``count`` (a Python float: no device work). When
    torch.distributed is initialised with several processes it is, as in DETR, the count summed over
    processes by one all_reduce and divided by the world size: every process then divides by the
    same number, and the gradient that DDP averages equals the concatenated batch's. It stays a
    device tensor so that the host does not wait for the reduction.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return float(max(count, 1))
    world = torch.distributed.get_world_size()
    if world == 1:
        return float(max(count, 1))
    total = torch.tensor(float(count), device=device)
    torch.distributed.all_reduce(total)
    return (total / world).clamp(min=1.0)


@dataclass
class _PriorTargets:
    """What the prior losses read, derived once per call; videos without priors already masked out.

    Attributes: esta: ESTA's targets (membership-derived masks, normalised texts, same-text classes),
    None when neither ESTA nor SGE is on; caption_emb (B, L, Dp); caption_valid (B, L) clip real,
    captioned and from a video with priors.
    """

    esta: EstaTargets | None
    caption_emb: Tensor
    caption_valid: Tensor

    @classmethod
    def from_batch(
        cls, batch: Batch, same_text_threshold: float, with_esta: bool, edge_share: float = 0.0
    ) -> _PriorTargets:
        priors = batch.priors
        assert priors is not None
        clips = batch.video_mask if priors.clip_mask is None else priors.clip_mask  # (B', L)
        has = priors.has_prior[:, None]  # (B', 1)
        esta = None
        if with_esta:
            event_mask = priors.event_mask & has
            member = priors.member  # derived once per split by the data, when it could be
            if member is None:
                member = event_membership(priors.event_spans, event_mask, clips)
            keep = None
            if edge_share > 0:
                keep = ~edge_clips(member, priors.event_spans, event_mask, clips, edge_share)
            esta = EstaTargets.build(member, priors.event_emb, event_mask, same_text_threshold, keep)
        return cls(
            esta=esta,
            caption_emb=priors.caption_emb,
            caption_valid=clips & priors.caption_mask & has,
        )


class SetCriterion(nn.Module):
    """Computes every loss of the grounding model; holds no parameters."""

    def __init__(self, cfg: LossConfig, model_cfg: ModelConfig, matcher: HungarianMatcher) -> None:
        super().__init__()
        self.cfg = cfg
        self.matcher = matcher
        self.parts = model_cfg.masra_parts
        self.num_aux = model_cfg.num_decoder_layers - 1 if model_cfg.aux_loss else 0
        self.class_weight: Tensor
        self.register_buffer("class_weight", torch.tensor([1.0, cfg.eos_coef]), persistent=False)
        self.matched_map: dict[str, Callable[[Outputs, _Matched], Tensor]] = {
            "span_l1": self.loss_span_l1,
            "span_giou": self.loss_span_giou,
            "label": self.loss_label,
        }
        # The prior losses of the parts that are on; each loss ``name`` is weighted by ``cfg.w_<name>``.
        self.prior_names = [n for n, spec in PRIOR_LOSSES.items() if self.parts[spec.part]]
        names = [*_MATCHED, "saliency_margin", "saliency_rank", "saliency_neg", *self.prior_names]
        self.weights: dict[str, float] = {n: float(getattr(cfg, f"w_{n}")) for n in names}
        for i in range(self.num_aux):
            self.weights.update({f"{name}_{i}": self.weights[name] for name in _MATCHED})

    # ---- matched-moment losses -------------------------------------------------------------------
    @staticmethod
    def _match(
        stages: list[Outputs], indices: MatchIndices, all_targets: Tensor, offsets: list[int]
    ) -> list[_Matched]:
        """Flatten the per-sample matches of every stage (``indices``: stage-major, B per stage).

        The (batch, query, target) index triples are built on the CPU and sent in one copy for all
        stages, from pinned memory on CUDA so that the host does not wait for the device.
        """
        batch = len(offsets) - 1
        counts = [len(q) for q, _ in indices]
        per_stage = [sum(counts[k * batch : (k + 1) * batch]) for k in range(len(stages))]
        flat = np.stack(
            [
                np.repeat(np.tile(np.arange(batch), len(stages)), counts),
                np.concatenate([q.numpy() for q, _ in indices]),
                np.concatenate([j.numpy() + offsets[i % batch] for i, (_, j) in enumerate(indices)]),
            ]
        ).astype(np.int64)  # (3, sum of matches over stages) on the CPU
        on_device = host_to_device(torch.from_numpy(flat), all_targets.device).split(per_stage, dim=1)
        return SetCriterion._matched(stages, on_device, all_targets, offsets)

    @staticmethod
    def _matched(
        stages: list[Outputs], on_device: tuple[Tensor, ...], all_targets: Tensor, offsets: list[int]
    ) -> list[_Matched]:
        """One :class:`_Matched` per stage from its (3, M) device (batch, query, target) indices."""
        num_spans = _num_spans(offsets[-1], all_targets.device)  # one all_reduce for every stage
        out = []
        for outputs, triple in zip(stages, on_device, strict=True):
            batch_idx, query_idx, target_idx = triple.unbind(0)
            out.append(
                _Matched(
                    batch_idx=batch_idx,
                    query_idx=query_idx,
                    pred=outputs["pred_spans"][batch_idx, query_idx].float(),
                    target=all_targets[target_idx].float(),
                    num_spans=num_spans,
                )
            )
        return out

    def loss_span_l1(self, outputs: Outputs, matched: _Matched) -> Tensor:
        """Sum of |pred - target|_1 over matched (center, width) pairs / number of targets (mean over
        processes under torch.distributed)."""
        return F.l1_loss(matched.pred, matched.target, reduction="sum") / matched.num_spans

    def loss_span_giou(self, outputs: Outputs, matched: _Matched) -> Tensor:
        """Sum of (1 - gIoU) over matched pairs / number of targets."""
        giou = paired_generalized_iou(span_cxw_to_xx(matched.pred), span_cxw_to_xx(matched.target))
        return (1 - giou).sum() / matched.num_spans

    def loss_label(self, outputs: Outputs, matched: _Matched) -> Tensor:
        """Foreground (0) for matched queries, background (1) otherwise; CE weighted by class."""
        logits = outputs["pred_logits"].float()  # (B, Q, 2)
        classes = torch.ones(logits.shape[:2], dtype=torch.long, device=logits.device)
        classes[matched.batch_idx, matched.query_idx] = 0
        return F.cross_entropy(logits.transpose(1, 2), classes, weight=self.class_weight.to(logits))

    # ---- prior losses ------------------------------------------------------------------------------
    # Each prior loss reads the outputs through masks, so it stays attached to the graph (zero
    # gradient) even when no video of the batch has priors.
    def prior_losses(self, outputs: Outputs, priors: _PriorTargets) -> dict[str, Tensor]:
        """The prior losses of the parts that are on. ESTA's event and clip terms and SGE's
        supervision (the clip term on ``sge_pred``) share their targets and run in one pass."""
        on = set(self.prior_names)
        out: dict[str, Tensor] = {}
        clip_names = [n for n in ("esta_clip", "sge") if n in on]
        if clip_names or "esta_event" in on:
            assert priors.esta is not None
            # Two clip terms on one tensor (ESTA reading SGE's prediction) are one term, computed once.
            projs = {id(outputs[PRIOR_LOSSES[n].reads]): outputs[PRIOR_LOSSES[n].reads] for n in clip_names}
            event, clips = esta_terms(
                priors.esta,
                self.cfg.esta_temperature,
                event_proj=outputs[PRIOR_LOSSES["esta_event"].reads] if "esta_event" in on else None,
                clip_projs=list(projs.values()),
            )
            by_tensor = dict(zip(projs, clips, strict=True))
            out.update({n: by_tensor[id(outputs[PRIOR_LOSSES[n].reads])] for n in clip_names})
            if event is not None:
                out["esta_event"] = event
        if "lrca" in on:
            out["lrca"] = lrca_loss(
                outputs[PRIOR_LOSSES["lrca"].reads],
                priors.caption_emb,
                priors.caption_valid,
                self.cfg.lrca_window,
                self.cfg.lrca_text_temperature,
                self.cfg.lrca_video_temperature,
            )
        return {n: out[n] for n in self.prior_names}  # in the table's order

    # ---- entry point ---------------------------------------------------------------------------------
    def forward(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        """All applicable losses, unweighted, in float32 even under autocast; names in the module docstring."""
        with torch.autocast(outputs["pred_logits"].device.type, enabled=False):
            return self._losses(outputs, batch)

    def _losses(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        if batch.spans is None or batch.saliency is None:
            qids = [m.get("qid") for m in batch.meta[:3]]
            raise ValueError(
                f"criterion needs labelled batches (spans and saliency); got none for qids {qids}"
            )
        targets = batch.spans
        all_targets = torch.cat(targets) if targets else outputs["pred_spans"].new_zeros(0, 2)
        offsets = [0]
        for t in targets:
            offsets.append(offsets[-1] + int(t.shape[0]))
        losses: dict[str, Tensor] = {}
        stages = [("", outputs)] + [(f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs", []))]
        # Every decoder layer is matched in one matcher call (layers stacked along the batch), so
        # the step waits on the device once for matching instead of once per layer.
        logits = torch.cat([out["pred_logits"] for _, out in stages])
        spans = torch.cat([out["pred_spans"] for _, out in stages])
        outs = [out for _, out in stages]
        indices = self.matcher(logits, spans, list(targets) * len(stages))
        matches = self._match(outs, indices, all_targets, offsets)
        for (suffix, out), matched in zip(stages, matches, strict=True):
            for name, fn in self.matched_map.items():
                losses[name + suffix] = fn(out, matched)

        mask = batch.video_mask
        scores = outputs["saliency"]
        scores_neg = outputs.get("saliency_neg")
        losses["saliency_margin"] = saliency_margin_loss(
            scores, batch.saliency, mask, self.cfg.saliency_margin
        )
        losses["saliency_rank"] = saliency_rank_contrastive_loss(
            scores, batch.saliency, mask, self.cfg.rank_levels, self.cfg.rank_temperature, scores_neg
        )
        if scores_neg is not None:  # the first K samples' rolled-query pass (K <= B)
            losses["saliency_neg"] = negative_pair_loss(scores_neg, mask[: scores_neg.shape[0]])

        if batch.priors is not None and self.prior_names:
            missing = sorted({PRIOR_LOSSES[n].reads for n in self.prior_names} - outputs.keys())
            if missing:
                raise ValueError(
                    f"prior losses need the model outputs {missing}; the loss-only heads run in "
                    "training mode only: call model.train() before the forward pass"
                )
            with_esta = bool({"esta_event", "esta_clip", "sge"} & set(self.prior_names))
            prior_targets = _PriorTargets.from_batch(
                batch, self.cfg.esta_same_text, with_esta, self.cfg.edge_share
            )
            losses.update(self.prior_losses(outputs, prior_targets))
        return losses


CRITERION_INPUTS = frozenset(
    {
        "pred_logits",
        "pred_spans",
        "aux_outputs",
        "saliency",
        "saliency_neg",
        *(spec.reads for spec in PRIOR_LOSSES.values()),
    }
)
"""Every model output the criterion reads (the rest, e.g. clip features for analysis, it ignores)."""


def build_criterion(cfg: LossConfig, model_cfg: ModelConfig) -> SetCriterion:
    """The criterion for a model built from ``model_cfg``: its MASRA switches decide the prior losses."""
    return SetCriterion(cfg, model_cfg, build_matcher(cfg))


def weighted_total(losses: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """sum_k weights[k] * losses[k]; a loss without a weight is an error (it would be silently dropped)."""
    missing = sorted(set(losses) - set(weights))
    if missing:
        raise KeyError(f"no weight for losses {missing}")
    if not losses:
        raise ValueError("weighted_total: no losses")
    return torch.stack([weights[name] * value.float() for name, value in losses.items()]).sum()
