"""Hungarian matcher: hand case, batched == per sample, empty targets, permutation invariance."""

from __future__ import annotations

import itertools

import pytest
import torch

from masra.grounding.config import LossConfig
from masra.grounding.losses.matcher import HungarianMatcher, build_matcher


def _random_batch(seed: int, batch: int = 5, queries: int = 6) -> tuple[torch.Tensor, torch.Tensor, list]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, queries, 2, generator=gen)
    spans = torch.rand(batch, queries, 2, generator=gen) * 0.5 + 0.1
    sizes = [int(n) for n in torch.randint(0, 4, (batch,), generator=gen)]
    targets = [torch.rand(n, 2, generator=gen) * 0.5 + 0.1 for n in sizes]
    return logits, spans, targets


def test_hand_case_picks_the_obvious_queries() -> None:
    matcher = HungarianMatcher(cost_class=1.0, cost_span=1.0, cost_giou=1.0)
    spans = torch.tensor([[[0.2, 0.1], [0.5, 0.2], [0.8, 0.1]]])
    logits = torch.zeros(1, 3, 2)
    targets = [torch.tensor([[0.79, 0.1], [0.21, 0.1]])]
    ((queries, tgt),) = matcher(logits, spans, targets)
    assert queries.tolist() == [0, 2]
    assert tgt.tolist() == [1, 0]


def test_batched_equals_per_sample() -> None:
    matcher = build_matcher(LossConfig())
    logits, spans, targets = _random_batch(0)
    batched = matcher(logits, spans, targets)
    for b in range(len(targets)):
        ((q, t),) = matcher(logits[b : b + 1], spans[b : b + 1], [targets[b]])
        assert torch.equal(batched[b][0], q) and torch.equal(batched[b][1], t)
        assert len(q) == min(spans.shape[1], len(targets[b]))


def test_empty_targets() -> None:
    matcher = build_matcher(LossConfig())
    logits, spans, _ = _random_batch(1, batch=3)
    out = matcher(logits, spans, [torch.zeros(0, 2)] * 3)
    assert all(q.numel() == 0 and t.numel() == 0 for q, t in out)
    mixed = matcher(logits, spans, [torch.zeros(0, 2), torch.tensor([[0.5, 0.2]]), torch.zeros(0, 2)])
    assert [len(q) for q, _ in mixed] == [0, 1, 0]


def test_query_permutation_invariance() -> None:
    matcher = build_matcher(LossConfig())
    logits, spans, targets = _random_batch(2, batch=4, queries=7)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    base = matcher(logits, spans, targets)
    permuted = matcher(logits[:, perm], spans[:, perm], targets)
    for (q, t), (qp, tp) in zip(base, permuted, strict=True):
        # Query perm[k] of the permuted input is query k of the original one.
        as_original = dict(zip(perm[qp].tolist(), tp.tolist(), strict=True))
        assert as_original == dict(zip(q.tolist(), t.tolist(), strict=True))


def test_target_permutation_invariance() -> None:
    matcher = build_matcher(LossConfig())
    logits, spans, _ = _random_batch(4, batch=1, queries=5)
    targets = [torch.tensor([[0.2, 0.1], [0.5, 0.3], [0.7, 0.05]])]
    perm = torch.tensor([2, 0, 1])
    ((q, t),) = matcher(logits, spans, targets)
    ((qp, tp),) = matcher(logits, spans, [targets[0][perm]])
    assert dict(zip(q.tolist(), t.tolist(), strict=True)) == dict(
        zip(qp.tolist(), perm[tp].tolist(), strict=True)
    )


def test_mismatched_batch_and_bad_costs_raise() -> None:
    matcher = build_matcher(LossConfig())
    logits, spans, targets = _random_batch(5, batch=2)
    with pytest.raises(ValueError, match="target lists"):
        matcher(logits, spans, targets[:1])
    with pytest.raises(ValueError, match="matching costs"):
        HungarianMatcher(cost_class=0.0, cost_span=0.0, cost_giou=0.0)


def _stated_cost(logits: torch.Tensor, spans: torch.Tensor, tgt: torch.Tensor, cfg: LossConfig) -> float:
    """The module docstring's cost of one (query, target) pair, written out in plain Python."""
    p_fg = torch.softmax(logits.double(), -1)[0].item()
    (c, w), (tc, tw) = spans.double().tolist(), tgt.double().tolist()
    a, b = (c - w / 2, c + w / 2), (tc - tw / 2, tc + tw / 2)
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    hull = max(a[1], b[1]) - min(a[0], b[0])
    giou = inter / union - (hull - union) / hull
    return -cfg.cost_class * p_fg + cfg.cost_span * (abs(c - tc) + abs(w - tw)) - cfg.cost_giou * giou


def test_matches_minimise_the_stated_cost_by_brute_force() -> None:
    cfg = LossConfig()
    matcher = build_matcher(cfg)
    logits, spans, targets = _random_batch(3, batch=6, queries=4)
    for b, (q, t) in enumerate(matcher(logits, spans, targets)):
        n = len(targets[b])
        if n == 0:
            assert len(q) == 0
            continue
        cost = [
            [_stated_cost(logits[b, i], spans[b, i], targets[b][j], cfg) for j in range(n)] for i in range(4)
        ]
        best = min(
            sum(cost[i][j] for j, i in enumerate(rows)) for rows in itertools.permutations(range(4), n)
        )
        got = sum(cost[i][j] for i, j in zip(q.tolist(), t.tolist(), strict=True))
        assert got == pytest.approx(best, abs=1e-5)  # float32 costs in the matcher
        assert sorted(t.tolist()) == list(range(n))


def test_the_retired_matcher_key_of_older_checkpoints_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """Checkpoints and configs written while ``loss.matcher`` chose a solver (scipy or the removed
    batched one) still load: the key is dropped, with a warning when it named the removed solver."""
    assert LossConfig.from_dict({"matcher": "scipy", "w_lrca": 0.5}) == LossConfig(w_lrca=0.5)
    assert not caplog.text
    assert LossConfig.from_dict({"matcher": "batched"}) == LossConfig()
    assert "loss.matcher 'batched' is no longer read" in caplog.text
    with pytest.raises(ValueError, match="unknown keys"):
        LossConfig.from_dict({"solver": "scipy"})
