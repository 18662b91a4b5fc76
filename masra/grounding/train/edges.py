"""``loss.esta_edge_share: auto``: ESTA's edge share set from the labelled training windows.

Before the first step, the training split's report measures how far the prior events' edges lie
from the labelled windows the run learns from (:func:`masra.grounding.data.priors.prior_edge_error`):
with a label fraction below 1, only those queries; the rest of the training labels are hidden from
it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from masra.grounding.config import LossConfig
from masra.grounding.data.priors import edge_share_from_error, prior_edge_error
from masra.grounding.data.resident import ResidentSplit

__all__ = ["resolve_edge_share"]

log = logging.getLogger(__name__)


def resolve_edge_share(
    loss_cfg: LossConfig,
    split: ResidentSplit,
    rows: torch.Tensor | None,
    resumed: dict[str, Any] | None = None,
) -> LossConfig:
    """``loss_cfg`` with ``esta_edge_share`` a number; the split report records the priors' edge
    error and the share used.

    ``rows``: the labelled training rows the run learns from (None: all labelled rows); the edge
    error is measured on them alone. A number given in the config is kept as it is. ``resumed``: the
    loss config of the checkpoint a resumed run continues; ``"auto"`` must resolve to the share it
    trained with (ValueError otherwise).
    """
    report = split.report
    priors = split.priors
    if priors is not None:
        idx = (torch.arange(split.num_labelled) if rows is None else rows).to(split.spans.device)
        report.prior_edge_error, report.prior_edge_matched = prior_edge_error(
            split.spans[idx],
            split.span_count[idx],
            split.q2v[idx],
            priors.event_spans,
            priors.event_mask & priors.has_prior[:, None],
        )
    auto = loss_cfg.esta_edge_share == "auto"
    share = (
        edge_share_from_error(report.prior_edge_error, report.prior_edge_matched)
        if auto
        else loss_cfg.edge_share
    )
    before = (resumed or {}).get("esta_edge_share", share)
    if auto and before != share:
        raise ValueError(
            f"--resume: loss.esta_edge_share auto resolves to {share} on this data, but the checkpoint "
            f"trained with {before}; resume with --set loss.esta_edge_share={before}"
        )
    report.esta_edge_share = share
    if priors is not None:
        log.info(
            "prior edge error %s over %d labelled windows; loss.esta_edge_share %.2f (%s)",
            report.prior_edge_error,
            report.prior_edge_matched,
            share,
            "auto" if auto else "set",
        )
    return dataclasses.replace(loss_cfg, esta_edge_share=share) if auto else loss_cfg
