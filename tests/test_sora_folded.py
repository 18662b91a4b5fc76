"""SORA's folded projections compute the published function: the same output, attention and
parameter gradients as the four separate projections, up to float rounding."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from masra.grounding.model.sora import SecondOrderRelationalAttention


def _unfolded(sora: SecondOrderRelationalAttention, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The module docstring's formulas with the four projections applied one by one (float64; the
    module computes the relations in float32, hence the tests' tolerances)."""
    h = sora.norm(x)
    q, k, v = sora.query(h), sora.key(h), sora.value(h)
    blocked = sora._blocked(mask)
    first = (q @ k.transpose(1, 2) * sora.scale).masked_fill(blocked, -1e4).softmax(-1)
    profile = nn.functional.normalize(first, dim=-1)
    logits = profile @ profile.transpose(1, 2) / sora.log_temperature.exp()
    attn = logits.masked_fill(blocked, -1e4).softmax(-1)
    return x + sora.out(attn @ v), attn


@pytest.mark.parametrize("window", [0, 2])
def test_folded_projections_match_the_four_projections(window: int) -> None:
    torch.manual_seed(0)
    batch, length, dim = 3, 12, 8  # 36 clips > 8 channels: the folded path
    sora = SecondOrderRelationalAttention(dim, dropout=0.0, window=window).double()
    for param in sora.parameters():  # non-zero biases, so every folded bias term is exercised
        nn.init.normal_(param, std=0.5)
    x = torch.randn(batch, length, dim, dtype=torch.float64)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 9:] = False
    mask[2, 5:] = False

    out, attn = sora(x, mask)
    grads = torch.autograd.grad(out.sum() + attn.square().sum(), list(sora.parameters()))
    want_out, want_attn = _unfolded(sora, x, mask)
    want_grads = torch.autograd.grad(want_out.sum() + want_attn.square().sum(), list(sora.parameters()))

    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attn, want_attn, rtol=1e-5, atol=1e-6, check_dtype=False)
    for got, want in zip(grads, want_grads, strict=True):  # b_k's: 0 (it cancels in the softmax)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert grads[4].abs().sum() > 0  # the query bias reaches the logits through W_k


def test_inference_keeps_the_four_projections_with_the_same_values() -> None:
    torch.manual_seed(1)
    sora = SecondOrderRelationalAttention(16, dropout=0.0).double()
    for param in sora.parameters():
        nn.init.normal_(param, std=0.5)
    x = torch.randn(4, 6, 16, dtype=torch.float64)
    mask = torch.ones(4, 6, dtype=torch.bool)
    folded_out = sora(x, mask)[0]  # training mode: folded
    sora.eval()
    with FlopCounterMode(display=False) as counter:
        out, attn = sora(x, mask)
    with FlopCounterMode(display=False) as reference:
        want_out, want_attn = _unfolded(sora, x, mask)
    assert counter.get_total_flops() == reference.get_total_flops()  # the four projections
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attn, want_attn, rtol=1e-5, atol=1e-6, check_dtype=False)
    torch.testing.assert_close(folded_out, out, rtol=1e-5, atol=1e-6)  # one function, two paths


def test_folding_halves_the_projections_flops_at_training_shapes() -> None:
    sora = SecondOrderRelationalAttention(32, dropout=0.0)
    x = torch.randn(8, 20, 32)  # 160 clips > 32 channels
    mask = torch.ones(8, 20, dtype=torch.bool)

    def flops(fn: object) -> int:
        with FlopCounterMode(display=False) as counter:
            fn()  # type: ignore[operator]
        return int(counter.get_total_flops())

    folded = flops(lambda: sora(x, mask)[0].sum().backward())
    four = flops(lambda: _unfolded(sora, x, mask)[0].sum().backward())
    dim = 32
    projection = 2 * 160 * dim * dim  # one (D, D) projection of every clip, forward
    products = 2 * (2 * dim**3 + 2 * dim * dim)  # the two weight products and two bias products
    # two projections fewer, forward and backward (3x), less the weight and bias products (3x)
    assert 3 * (2 * projection - products) <= four - folded <= 3 * 2 * projection
