"""SGE's temporal convolution computed as one matmul equals ``Conv1d`` (values and gradients)."""

from __future__ import annotations

import torch

from masra.grounding.model.sge import SemanticGuidedEnhancement


def test_context_matmul_equals_conv1d() -> None:
    torch.manual_seed(0)
    sge = SemanticGuidedEnhancement(dim=16, prior_dim=8, dropout=0.0)
    x = torch.randn(3, 11, 16, requires_grad=True)
    ours = sge._context(x)
    ours_grads = torch.autograd.grad((ours * ours.detach().sin()).sum(), [x, sge.context.weight])
    reference = sge.context(x.transpose(1, 2)).transpose(1, 2)
    ref_grads = torch.autograd.grad((reference * reference.detach().sin()).sum(), [x, sge.context.weight])
    assert torch.allclose(ours, reference, atol=1e-5)
    for got, want in zip(ours_grads, ref_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-4)


def test_context_never_mixes_videos_or_wraps_around() -> None:
    sge = SemanticGuidedEnhancement(dim=4, prior_dim=4, dropout=0.0)
    x = torch.zeros(2, 5, 4)
    x[1, 0] = 1.0  # only the second video's first clip is non-zero
    with torch.no_grad():
        out = sge._context(x) - sge.context.bias
    assert out[0].abs().max() == 0  # the first video sees nothing of the second
    assert out[1, 2:].abs().max() == 0  # clip 0 reaches clip 1 only, never the far end
    assert out[1, :2].abs().max() > 0


def test_depthwise_context_equals_grouped_conv1d() -> None:
    torch.manual_seed(1)
    sge = SemanticGuidedEnhancement(dim=6, prior_dim=4, dropout=0.0, depthwise=True)
    assert sge.context.weight.shape == (6, 1, 3)
    x = torch.randn(2, 9, 6)
    reference = sge.context(x.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(sge._context(x), reference, atol=1e-6)
