"""The row logsumexp that skips underflowing terms (masra.grounding.masking) against torch's."""

from __future__ import annotations

import torch

from masra.grounding.masking import MASKED_LOGIT, UNDERFLOW, log_softmax, logsumexp


def _rows(seed: int) -> torch.Tensor:
    """Logits as ESTA and LRCA build them: real values, many MASKED_LOGIT entries, some rows all masked,
    one row whose real values span more than exp(UNDERFLOW)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 40, generator=gen) * 6
    x = x.masked_fill(torch.rand(64, 40, generator=gen) < 0.7, MASKED_LOGIT)
    x[:3] = MASKED_LOGIT  # padded rows
    x[3, :5] = torch.tensor([0.0, -10.0, -49.0, -51.0, -200.0])
    return x


def test_values_and_gradients_match_torch_in_double() -> None:
    for seed in range(3):
        x = _rows(seed)
        ours, ref = x.clone().requires_grad_(), x.double().requires_grad_()
        weight = torch.randn(x.shape[0])
        (logsumexp(ours) * weight).sum().backward()
        expected = torch.logsumexp(ref, dim=-1)
        (expected * weight.double()).sum().backward()
        # float32 near MASKED_LOGIT resolves 1e-3, as torch's own float32 logsumexp does
        assert torch.allclose(logsumexp(x).double(), expected, rtol=1e-6, atol=1e-5)
        assert torch.allclose(torch.logsumexp(x, dim=-1).double(), expected, rtol=1e-6, atol=1e-5)
        assert ours.grad is not None and ref.grad is not None
        assert torch.allclose(ours.grad.double(), ref.grad, rtol=1e-5, atol=1e-6)


def test_all_masked_row_is_finite_like_torch() -> None:
    x = torch.full((2, 7), MASKED_LOGIT, requires_grad=True)
    out = logsumexp(x)
    assert torch.allclose(out, torch.logsumexp(x.detach(), dim=-1))
    out.sum().backward()
    assert x.grad is not None
    assert torch.allclose(x.grad, torch.full((2, 7), 1 / 7))  # uniform, as torch's softmax


def test_terms_below_the_cut_get_no_gradient() -> None:
    x = torch.tensor([[0.0, UNDERFLOW - 1.0, -1.0]], requires_grad=True)
    logsumexp(x).sum().backward()
    assert x.grad is not None
    assert x.grad[0, 1] == 0 and x.grad[0, 0] > 0 and x.grad[0, 2] > 0


def test_gradcheck_in_double() -> None:
    x = torch.randn(5, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(logsumexp, (x,))


def test_log_softmax_matches_torch() -> None:
    x = _rows(7)
    ours, reference = log_softmax(x).double(), x.double().log_softmax(-1)
    # float32 resolves 1e-3 at MASKED_LOGIT (torch's float32 log_softmax alike); real entries 1e-5
    assert torch.allclose(ours, reference, rtol=1e-6, atol=1e-5)
    real = x > MASKED_LOGIT
    assert torch.allclose(ours[real], reference[real], rtol=0, atol=1e-5)
