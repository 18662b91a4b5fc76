"""``loss.esta_edge_share: auto``: the share follows the priors' measured edge error on the labelled
training windows, and only on those the run may learn from."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from masra.grounding.config import LossConfig
from masra.grounding.data.priors import EDGE_MIN_MATCHED, edge_share_from_error, prior_edge_error
from masra.grounding.data.report import SplitReport
from masra.grounding.train.edges import resolve_edge_share


def test_the_share_is_one_standard_deviation_of_the_edge_jitter_in_steps_of_005() -> None:
    assert edge_share_from_error(0.0, 500) == 0.0  # exact edges: spans used whole
    assert edge_share_from_error(0.0976, 64) == 0.15  # the open world's jitter of 0.15
    assert edge_share_from_error(0.173, 4187) == 0.25
    assert edge_share_from_error(0.9, 100) == 0.45  # never past the config's bound
    assert edge_share_from_error(0.0976, EDGE_MIN_MATCHED - 1) == 0.0  # too few windows to trust
    assert edge_share_from_error(None, 0) == 0.0


def _split(prior_edges: list[tuple[float, float]], windows: list[tuple[float, float]]) -> Any:
    """One prior event per video, one labelled window (start, end) per query, query q in video q."""
    n = len(windows)
    spans = torch.tensor([[[(s + e) / 2, e - s]] for s, e in windows])  # (Q, 1, 2) center, width
    priors = SimpleNamespace(
        event_spans=torch.tensor([[list(p)] for p in prior_edges]),
        event_mask=torch.ones(n, 1, dtype=torch.bool),
        has_prior=torch.ones(n, dtype=torch.bool),
    )
    count, q2v = torch.ones(n, dtype=torch.long), torch.arange(n)
    error, matched = prior_edge_error(spans, count, q2v, priors.event_spans, priors.event_mask)
    report = SplitReport(prior_edge_error=error, prior_edge_matched=matched)  # over all rows, as built
    return SimpleNamespace(
        spans=spans, span_count=count, q2v=q2v, priors=priors, num_labelled=n, report=report
    )


def test_auto_resolves_from_the_labelled_rows_only_and_the_report_says_what_was_used() -> None:
    exact = [(0.2, 0.6)] * 30
    off = [(0.24, 0.64)] * 40  # each edge 0.1 of the event's length away
    split = _split(exact + off, [(0.2, 0.6)] * 70)
    assert split.report.prior_edge_error == pytest.approx(0.1, abs=1e-4)  # all rows: mostly off
    cfg = resolve_edge_share(LossConfig(), split, torch.arange(30))  # only the exact half is labelled
    assert cfg.esta_edge_share == 0.0 and split.report.esta_edge_share == 0.0
    assert split.report.prior_edge_matched == 30 and split.report.prior_edge_error == 0.0
    split = _split(exact + off, [(0.2, 0.6)] * 70)
    cfg = resolve_edge_share(LossConfig(), split, torch.arange(30, 70))
    assert split.report.prior_edge_error == pytest.approx(0.1, abs=1e-4)
    assert cfg.esta_edge_share == 0.15 and cfg.edge_share == 0.15


def test_a_number_in_the_config_is_kept_and_a_resumed_run_must_resolve_to_its_share() -> None:
    split = _split([(0.24, 0.64)] * 30, [(0.2, 0.6)] * 30)
    assert resolve_edge_share(LossConfig(esta_edge_share=0.05), split, None).esta_edge_share == 0.05
    assert split.report.esta_edge_share == 0.05
    assert resolve_edge_share(LossConfig(), split, None, resumed={"esta_edge_share": 0.15}).edge_share == 0.15
    with pytest.raises(ValueError, match=r"esta_edge_share=0\.0"):
        resolve_edge_share(LossConfig(), split, None, resumed={"esta_edge_share": 0.0})


def test_the_config_accepts_auto_or_a_share_and_unresolved_auto_counts_as_zero() -> None:
    assert LossConfig().esta_edge_share == "auto" and LossConfig().edge_share == 0.0
    for bad in ("half", 0.5, -0.1, True):
        with pytest.raises(ValueError, match="esta_edge_share"):
            LossConfig(esta_edge_share=bad)
