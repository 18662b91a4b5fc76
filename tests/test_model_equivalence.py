"""The MASRA model parts, rewritten to dispatch fewer ops, compute what their first formulation computed.

Each ``_ref_*`` below is the earlier, straightforward formulation, kept here (not in the library) as
the reference; it reads the parameters of the library module, so outputs and parameter gradients can
be compared on random inputs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masra.grounding.model.sora import SecondOrderRelationalAttention

TIGHT = {"rtol": 1e-5, "atol": 1e-6}


pytestmark = pytest.mark.usefixtures("one_thread")


def _ref_sora(m: SecondOrderRelationalAttention, x: torch.Tensor, mask: torch.Tensor):  # type: ignore[no-untyped-def]
    """Separate q/k/v projections, an expanded key mask and einsum contractions."""
    allowed = mask[:, None, :].expand(-1, mask.shape[1], -1)
    if m.window > 0:
        idx = torch.arange(mask.shape[1])
        allowed = allowed & ((idx[:, None] - idx[None, :]).abs() <= m.window)
    h = m.norm(x)
    q, k = m.query(h).float(), m.key(h).float()
    with torch.autocast(x.device.type, enabled=False):
        first = torch.einsum("bid,bjd->bij", q, k) * m.scale
        first = first.masked_fill(~allowed, -1e4).softmax(-1)
        profile = nn.functional.normalize(first, dim=-1)
        second = torch.einsum("bik,bjk->bij", profile, profile)
        attn = (second / m.log_temperature.float().exp()).masked_fill(~allowed, -1e4).softmax(-1)
    out = torch.einsum("bij,bjd->bid", attn.to(h.dtype), m.value(h))
    return x + m.dropout(m.out(out)), attn


def _grads(module: nn.Module, x: torch.Tensor, fn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # type: ignore[no-untyped-def]
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out, attn = fn(x)
    ((out * torch.linspace(-1, 1, out.shape[-1])).sum() + attn.square().sum()).backward()
    assert x.grad is not None
    return x.grad, {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("window", [0, 3])
def test_sora_matches_the_reference_with_gradients(window: int) -> None:
    torch.manual_seed(0)
    m = SecondOrderRelationalAttention(16, dropout=0.0, window=window).eval()
    x = torch.randn(3, 9, 16)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 2:] = False
    out, attn = m(x, mask)
    ref_out, ref_attn = _ref_sora(m, x, mask)
    torch.testing.assert_close(out, ref_out, **TIGHT)
    torch.testing.assert_close(attn, ref_attn, **TIGHT)
    x_grad, p_grads = _grads(m, x, lambda t: m(t, mask))
    ref_x_grad, ref_p_grads = _grads(m, x, lambda t: _ref_sora(m, t, mask))
    torch.testing.assert_close(x_grad, ref_x_grad, **TIGHT)
    assert p_grads.keys() == ref_p_grads.keys() and len(p_grads) == len(list(m.parameters()))
    for name, grad in p_grads.items():
        torch.testing.assert_close(grad, ref_p_grads[name], **TIGHT, msg=name)


def test_sora_checkpoint_names_are_unchanged() -> None:
    names = set(SecondOrderRelationalAttention(8, dropout=0.1).state_dict())
    assert names == {
        "log_temperature",
        *(
            f"{layer}.{kind}"
            for layer in ("norm", "query", "key", "value", "out")
            for kind in ("weight", "bias")
        ),
    }


def test_sora_under_bf16_autocast_keeps_the_reference_dtypes() -> None:
    torch.manual_seed(1)
    m = SecondOrderRelationalAttention(16, dropout=0.0).eval()
    x = torch.randn(2, 7, 16)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 5:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, attn = m(x, mask)
        ref_out, ref_attn = _ref_sora(m, x, mask)
    assert (out.dtype, attn.dtype) == (ref_out.dtype, ref_attn.dtype) == (torch.float32, torch.float32)
    torch.testing.assert_close(attn, ref_attn, rtol=1e-3, atol=1e-4)  # relations run in float32
    torch.testing.assert_close(out, ref_out, rtol=1e-3, atol=1e-3)  # bf16 matmuls
