"""The batched assignment solver against scipy, and the batched matcher against the scipy matcher.

Random cost matrices (wide, square, tall), integer costs with many ties, padded rows: the batched
solver must reach scipy's minimum total cost every time, and scipy's very assignment where the
optimum is unique (continuous random costs: unique with probability 1).
"""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from scipy.optimize import linear_sum_assignment

from bench.op_count import OpCountConfig, build_variant, random_batch
from masra.grounding.config import LossConfig
from masra.grounding.losses.assignment import batched_linear_sum_assignment, scipy_batched_assignment
from masra.grounding.losses.matcher import HungarianMatcher, build_matcher

pytestmark = pytest.mark.usefixtures("one_thread")


def _check_against_scipy(cost: torch.Tensor, mask: torch.Tensor | None, unique: bool) -> None:
    """Every problem: a valid assignment of scipy's total cost; scipy's own when ``unique``."""
    out = batched_linear_sum_assignment(cost, mask)
    assert out.shape == cost.shape[:2] and out.dtype == torch.int64
    for b in range(cost.shape[0]):
        real = torch.arange(cost.shape[1]) if mask is None else mask[b].nonzero().squeeze(1)
        if mask is not None:
            assert (out[b][~mask[b]] == -1).all(), "padded rows must stay unassigned"
        sub = cost[b, real].double().numpy()
        rows, cols = linear_sum_assignment(sub)
        got_rows = (out[b, real] >= 0).nonzero().squeeze(1)
        got_cols = out[b, real][got_rows]
        assert len(got_rows) == len(rows) == min(sub.shape), "every row (or column) of the short side"
        assert len(set(got_cols.tolist())) == len(got_cols), "columns must be distinct"
        total = sub[got_rows.numpy(), got_cols.numpy()].sum()
        assert total == pytest.approx(sub[rows, cols].sum(), rel=1e-12, abs=1e-12)
        if unique:
            assert dict(zip(got_rows.tolist(), got_cols.tolist(), strict=True)) == dict(
                zip(rows.tolist(), cols.tolist(), strict=True)
            )


@pytest.mark.parametrize("shape", [(7, 1, 1), (5, 3, 3), (6, 2, 7), (4, 5, 9), (3, 6, 2), (2, 9, 4)])
def test_random_costs_equal_scipy(shape: tuple[int, int, int]) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    for _ in range(10):
        _check_against_scipy(torch.randn(*shape, generator=gen), None, unique=True)


@pytest.mark.parametrize("shape", [(8, 4, 4), (8, 3, 6), (8, 6, 3)])
def test_ties_reach_the_same_total(shape: tuple[int, int, int]) -> None:
    gen = torch.Generator().manual_seed(1)
    for levels in (1, 2, 3):
        for _ in range(10):
            cost = torch.randint(0, levels, shape, generator=gen).float()
            _check_against_scipy(cost, None, unique=False)


def test_padded_rows_are_skipped() -> None:
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        cost = torch.randn(6, 5, 8, generator=gen)
        mask = torch.rand(6, 5, generator=gen) < 0.6
        mask[0] = False  # a problem with no real row at all
        _check_against_scipy(cost, mask, unique=True)
        ties = torch.randint(0, 2, (6, 5, 8), generator=gen).float()
        _check_against_scipy(ties, mask, unique=False)


def test_scipy_fallback_has_the_same_contract() -> None:
    gen = torch.Generator().manual_seed(3)
    cost = torch.randn(5, 4, 7, generator=gen)
    mask = torch.rand(5, 4, generator=gen) < 0.7
    assert torch.equal(scipy_batched_assignment(cost, mask), batched_linear_sum_assignment(cost, mask))


def test_hand_case_and_bad_inputs() -> None:
    cost = torch.tensor([[[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]]])
    assert batched_linear_sum_assignment(cost).tolist() == [[1, 0, 2]]  # 1 + 2 + 2 = 5
    assert batched_linear_sum_assignment(torch.zeros(2, 0, 3)).shape == (2, 0)
    with pytest.raises(ValueError, match="cost must be"):
        batched_linear_sum_assignment(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="row_mask"):
        batched_linear_sum_assignment(torch.zeros(1, 2, 3), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="padded rows"):
        batched_linear_sum_assignment(torch.zeros(1, 4, 3), torch.ones(1, 4, dtype=torch.bool))


# ---- the matcher ---------------------------------------------------------------------------------------
def test_batched_matcher_equals_scipy_matcher() -> None:
    gen = torch.Generator().manual_seed(4)
    scipy_m = build_matcher(LossConfig())
    batched_m = build_matcher(LossConfig(matcher="batched"))
    assert batched_m.solver == "batched"
    for _ in range(20):
        logits = torch.randn(7, 10, 2, generator=gen)
        spans = torch.rand(7, 10, 2, generator=gen) * 0.5 + 0.1
        sizes = torch.randint(0, 5, (7,), generator=gen).tolist()
        targets = [torch.rand(n, 2, generator=gen) * 0.5 + 0.1 for n in sizes]
        for (q1, t1), (q2, t2) in zip(
            scipy_m(logits, spans, targets), batched_m(logits, spans, targets), strict=True
        ):
            assert torch.equal(q1, q2) and torch.equal(t1, t2)


def test_batched_matcher_more_targets_than_queries_falls_back() -> None:
    gen = torch.Generator().manual_seed(5)
    logits, spans = torch.randn(2, 3, 2, generator=gen), torch.rand(2, 3, 2, generator=gen) * 0.5 + 0.1
    targets = [torch.rand(5, 2, generator=gen) * 0.5 + 0.1, torch.rand(1, 2, generator=gen) * 0.5 + 0.1]
    ref = HungarianMatcher()(logits, spans, targets)
    out = HungarianMatcher(solver="batched")(logits, spans, targets)
    assert [len(q) for q, _ in out] == [3, 1]
    for (q1, t1), (q2, t2) in zip(ref, out, strict=True):
        assert torch.equal(q1, q2) and torch.equal(t1, t2)
    with pytest.raises(ValueError, match="solver"):
        HungarianMatcher(solver="greedy")
    with pytest.raises(ValueError, match="matcher"):
        LossConfig(matcher="greedy")


def test_training_step_losses_equal_with_either_solver() -> None:
    """The whole criterion (every decoder layer, MASRA's prior losses) gives the same losses."""
    cfg = OpCountConfig(
        batch_size=6,
        num_clips=12,
        text_len=5,
        prior_dim=8,
        model={"hidden_dim": 32, "num_heads": 4, "ffn_dim": 64, "lrca_dim": 8, "dai_codebook_size": 3},
    )
    variant, video_dim, text_dim = build_variant("masra", cfg, Accelerator(cpu=True))
    batch = random_batch(cfg, video_dim, text_dim, torch.device("cpu"), torch.float32)
    step = variant.step
    torch.manual_seed(0)
    _, scipy_losses = step(batch)
    step.criterion.matcher.solver = "batched"
    torch.manual_seed(0)
    _, batched_losses = step(batch)
    assert scipy_losses.keys() == batched_losses.keys() and "span_l1_0" in scipy_losses
    for name, value in scipy_losses.items():
        torch.testing.assert_close(batched_losses[name], value, rtol=1e-6, atol=1e-7, msg=name)


def test_flat_matching_is_the_per_sample_matching_concatenated() -> None:
    gen = torch.Generator().manual_seed(6)
    matcher = HungarianMatcher(solver="batched")
    logits, spans = torch.randn(6, 8, 2, generator=gen), torch.rand(6, 8, 2, generator=gen) * 0.5 + 0.1
    targets = [torch.rand(n, 2, generator=gen) * 0.5 + 0.1 for n in (2, 0, 3, 1, 4, 1)]
    flat = matcher.match_flat(logits, spans, targets)
    assert flat is not None
    per_sample = HungarianMatcher()(logits, spans, targets)
    assert torch.equal(flat[0], torch.cat([q for q, _ in per_sample]))
    assert torch.equal(flat[1], torch.cat([t for _, t in per_sample]))
    assert HungarianMatcher().match_flat(logits, spans, targets) is None  # scipy: the per-sample path
    assert matcher.match_flat(logits[:, :2], spans[:, :2], targets) is None  # N_i > Q: scipy
