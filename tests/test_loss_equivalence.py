"""The prior losses, rewritten to dispatch fewer ops, compute what their first formulation computed.

Each ``_ref_*`` below is the earlier, straightforward formulation, kept here (not in the library) as
the reference: the library's losses and their gradients must match it on random inputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _esta import clip_term, esta_clip_loss, esta_event_loss, event_term

from masra.grounding.config import LossConfig, ModelConfig
from masra.grounding.data.batch import Batch, PriorBatch
from masra.grounding.losses import build_criterion
from masra.grounding.losses.esta import (
    EstaTargets,
    esta_terms,
    event_membership,
)
from masra.grounding.losses.lrca import local_window, lrca_loss

_NEG = -1e4
TIGHT = {"rtol": 1e-5, "atol": 1e-6}


# ---- reference formulations ---------------------------------------------------------------------------
def _ref_same_text(t: torch.Tensor, valid: torch.Tensor, threshold: float) -> torch.Tensor:
    eye = torch.eye(t.shape[0], dtype=torch.bool)
    return (((t @ t.T) >= threshold) | eye) & valid[:, None] & valid[None, :]


def _ref_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    has = positives.any(-1)
    lse_pos = torch.logsumexp(logits.masked_fill(~positives, _NEG), dim=-1)
    return (torch.logsumexp(logits, dim=-1) - lse_pos) * has


def _ref_membership(event_spans, event_mask, clip_mask):  # type: ignore[no-untyped-def]
    n = clip_mask.sum(1).clamp(min=1).to(torch.float32)
    steps = torch.arange(clip_mask.shape[1], dtype=torch.float32)
    centers = (steps[None, :] + 0.5) / n[:, None]
    start, end = event_spans.float().unbind(-1)
    inside = (centers[:, None, :] >= start[..., None]) & (centers[:, None, :] <= end[..., None])
    inside = inside & clip_mask[:, None, :]
    mid_idx = torch.minimum(((start + end) / 2 * n[:, None]).floor(), n[:, None] - 1).clamp(min=0).long()
    fallback = F.one_hot(mid_idx, clip_mask.shape[1]).bool()
    inside = torch.where(inside.any(-1, keepdim=True), inside, fallback)
    return inside & event_mask[..., None]


def _ref_event(z, member, emb, event_mask, temperature, threshold):  # type: ignore[no-untyped-def]
    weight = member.float()
    pooled = torch.einsum("bel,bld->bed", weight, z.float()) / weight.sum(-1, keepdim=True).clamp(min=1)
    p = F.normalize(pooled, dim=-1).flatten(0, 1)
    t = F.normalize(emb.float(), dim=-1).flatten(0, 1)
    valid = event_mask.flatten()
    logits = ((p @ t.T) / temperature).masked_fill(~(valid[:, None] & valid[None, :]), _NEG)
    same = _ref_same_text(t, valid, threshold)
    rows, cols = _ref_nce(logits, same), _ref_nce(logits.T, same)
    return 0.5 * (rows + cols).sum() / valid.sum().clamp(min=1)


def _ref_clip(z, member, emb, event_mask, temperature, threshold):  # type: ignore[no-untyped-def]
    batch = member.shape[0]
    zn = F.normalize(z.float(), dim=-1).flatten(-3, -2)
    t = F.normalize(emb.float(), dim=-1).flatten(0, 1)
    logits = ((zn @ t.T) / temperature).masked_fill(~event_mask.flatten(), _NEG)
    eye = torch.eye(batch, dtype=torch.bool)
    pos = (eye[:, None, :, None] & member.permute(0, 2, 1)[:, :, None, :]).flatten(2).flatten(0, 1)
    covered = pos.any(-1)
    pos = (pos.float() @ _ref_same_text(t, event_mask.flatten(), threshold).float()) > 0
    return (_ref_nce(logits, pos) * covered).sum(-1) / covered.sum().clamp(min=1)


def _ref_lrca(feats, captions, valid, window, t_text, t_video):  # type: ignore[no-untyped-def]
    idx = torch.arange(valid.shape[1])
    dist = (idx[:, None] - idx[None, :]).abs()
    allowed = ((dist > 0) & (dist <= window))[None] & valid[:, :, None] & valid[:, None, :]
    c, f = F.normalize(captions.float(), dim=-1), F.normalize(feats.float(), dim=-1)
    log_p = (c @ c.transpose(1, 2) / t_text).masked_fill(~allowed, _NEG).log_softmax(-1)
    log_q = (f @ f.transpose(1, 2) / t_video).masked_fill(~allowed, _NEG).log_softmax(-1)
    kl = (log_p.exp() * (log_p - log_q) * allowed).sum(-1)
    rows = allowed.any(-1)
    return (kl * rows).sum() / rows.sum().clamp(min=1)


# ---- random priors -------------------------------------------------------------------------------------
def _world(seed: int, batch: int = 5, clips: int = 14, events: int = 4, dim: int = 12):  # type: ignore[no-untyped-def]
    """Ragged clips and events, repeated descriptions, a video without events, a zero embedding."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(clips // 2, clips + 1, (batch,), generator=gen)
    lengths[0] = clips
    clip_mask = torch.arange(clips)[None] < lengths[:, None]
    n_events = torch.randint(1, events + 1, (batch,), generator=gen)
    event_mask = torch.arange(events)[None] < n_events[:, None]
    event_mask[-1] = False  # a video without priors
    spans = torch.rand(batch, events, 2, generator=gen).sort(-1).values
    spans[0, 0] = torch.tensor([0.41, 0.42])  # covers no clip center: takes its midpoint's clip
    pool = torch.randn(3, dim, generator=gen)
    emb = torch.where(
        torch.rand(batch, events, 1, generator=gen) < 0.5,
        pool[torch.randint(0, 3, (batch, events), generator=gen)],
        torch.randn(batch, events, dim, generator=gen),
    )
    emb[1, 0] = 0.0  # an all-zero embedding is still its own positive
    member = event_membership(spans, event_mask, clip_mask)
    z = torch.randn(batch, clips, dim, generator=gen)
    return z, member, emb, event_mask, clip_mask


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.99, 1.5])
def test_esta_terms_match_the_reference_with_gradients(seed: int, threshold: float) -> None:
    z, member, emb, event_mask, _ = _world(seed)
    targets = EstaTargets.build(member, emb, event_mask, threshold)
    stacked = torch.stack([z, z.flip(1)]).requires_grad_()
    for term, ref, inp in (
        (event_term, _ref_event, z.clone().requires_grad_()),
        (clip_term, _ref_clip, stacked),
    ):
        got = term(inp, targets, 0.07)
        (grad,) = torch.autograd.grad(got.sum(), inp)
        ref_inp = inp.detach().clone().requires_grad_()
        want = ref(ref_inp, member, emb, event_mask, 0.07, threshold)
        (ref_grad,) = torch.autograd.grad(want.sum(), ref_inp)
        torch.testing.assert_close(got, want, **TIGHT)
        torch.testing.assert_close(grad, ref_grad, **TIGHT)
    # the one-call wrappers build the same targets
    torch.testing.assert_close(
        esta_event_loss(z, member, emb, event_mask, 0.1, threshold),
        _ref_event(z, member, emb, event_mask, 0.1, threshold),
        **TIGHT,
    )
    torch.testing.assert_close(
        esta_clip_loss(z, member, emb, event_mask, 0.1, threshold),
        _ref_clip(z, member, emb, event_mask, 0.1, threshold),
        **TIGHT,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_one_pass_of_both_terms_matches_the_reference_with_gradients(seed: int) -> None:
    z, member, emb, event_mask, _ = _world(seed)
    sge = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed + 7))
    targets = EstaTargets.build(member, emb, event_mask, 0.99)
    args = (member, emb, event_mask, 0.07, 0.99)
    z1, s1 = z.clone().requires_grad_(), sge.clone().requires_grad_()
    event, (clip, sge_clip) = esta_terms(targets, 0.07, event_proj=z1, clip_projs=[z1, s1])
    assert event is not None
    grads = torch.autograd.grad(event + 2 * clip + 3 * sge_clip, (z1, s1))
    z2, s2 = z.clone().requires_grad_(), sge.clone().requires_grad_()
    want = (_ref_event(z2, *args), _ref_clip(z2, *args), _ref_clip(s2, *args))
    ref_grads = torch.autograd.grad(want[0] + 2 * want[1] + 3 * want[2], (z2, s2))
    for got, ref in zip((event, clip, sge_clip, *grads), (*want, *ref_grads), strict=True):
        torch.testing.assert_close(got, ref, **TIGHT)
    with pytest.raises(ValueError, match="event_proj or clip_projs"):
        esta_terms(targets, 0.07)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_event_membership_matches_the_reference(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    clip_mask = (
        torch.arange(11)[None] < torch.randint(0, 12, (6,), generator=gen)[:, None]
    )  # one may be empty
    spans = torch.rand(6, 5, 2, generator=gen).sort(-1).values
    spans[:, 0] = torch.tensor([0.0, 0.0])  # empty span at the start
    spans[:, 1] = torch.tensor([0.98, 1.0])  # short span at the end
    spans[:, 2, 1] = spans[:, 2, 0] + 1e-3  # too short to hold a clip center
    event_mask = torch.rand(6, 5, generator=gen) < 0.8
    got = event_membership(spans, event_mask, clip_mask)
    assert torch.equal(got, _ref_membership(spans, event_mask, clip_mask))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("window", [1, 5, 40])
def test_lrca_matches_the_reference_with_gradients(seed: int, window: int) -> None:
    _, _, _, _, clip_mask = _world(seed)
    gen = torch.Generator().manual_seed(10 + seed)
    captions = torch.randn(*clip_mask.shape, 9, generator=gen)
    valid = clip_mask & (torch.rand(clip_mask.shape, generator=gen) < 0.8)
    feats = torch.randn(*clip_mask.shape, 6, generator=gen, requires_grad=True)
    got = lrca_loss(feats, captions, valid, window, 0.05, 0.1)
    want = _ref_lrca(feats, captions, valid, window, 0.05, 0.1)
    torch.testing.assert_close(got, want, **TIGHT)
    torch.testing.assert_close(
        torch.autograd.grad(got, feats)[0], torch.autograd.grad(want, feats)[0], **TIGHT
    )
    idx = torch.arange(clip_mask.shape[1])
    band = ((idx[:, None] - idx[None, :]).abs() <= window) & (idx[:, None] != idx[None, :])
    assert torch.equal(local_window(valid, window), band[None] & valid[:, :, None] & valid[:, None, :])


def test_criterion_prior_losses_match_the_reference() -> None:
    z, _, emb, event_mask, clip_mask = _world(3)
    batch_size, clips, dim = z.shape
    gen = torch.Generator().manual_seed(4)
    spans = torch.rand(batch_size, emb.shape[1], 2, generator=gen).sort(-1).values
    has_prior = torch.ones(batch_size, dtype=torch.bool)
    has_prior[2] = False
    priors = PriorBatch(
        event_spans=spans,
        event_emb=emb,
        event_mask=event_mask,
        caption_emb=torch.randn(batch_size, clips, dim, generator=gen),
        caption_mask=clip_mask & (torch.rand(clip_mask.shape, generator=gen) < 0.9),
        has_prior=has_prior,
    )
    batch = Batch(
        video=torch.zeros(batch_size, clips, 4),
        video_mask=clip_mask,
        text=torch.zeros(batch_size, 2, 4),
        text_mask=torch.ones(batch_size, 2, dtype=torch.bool),
        spans=[torch.tensor([[0.5, 0.2]])] * batch_size,
        saliency=torch.rand(batch_size, clips, generator=gen),
        priors=priors,
    )
    outputs = {
        "pred_logits": torch.randn(batch_size, 3, 2, generator=gen),
        "pred_spans": torch.rand(batch_size, 3, 2, generator=gen),
        "saliency": torch.randn(batch_size, clips, generator=gen),
        "aux_outputs": [],
        "esta_clip": torch.randn(batch_size, clips, dim, generator=gen),
        "sge_pred": torch.randn(batch_size, clips, dim, generator=gen),
        "lrca_clip": torch.randn(batch_size, clips, 6, generator=gen),
    }
    loss_cfg = LossConfig()
    crit = build_criterion(loss_cfg, ModelConfig(video_dim=4, text_dim=4, use_sora=False, use_dai=False))
    losses = crit(outputs, batch)
    ev_mask = event_mask & has_prior[:, None]
    ref_member = event_membership(spans, ev_mask, clip_mask)
    args = (ref_member, emb, ev_mask, loss_cfg.esta_temperature, loss_cfg.esta_same_text)
    torch.testing.assert_close(losses["esta_event"], _ref_event(outputs["esta_clip"], *args), **TIGHT)
    torch.testing.assert_close(losses["esta_clip"], _ref_clip(outputs["esta_clip"], *args), **TIGHT)
    torch.testing.assert_close(losses["sge"], _ref_clip(outputs["sge_pred"], *args), **TIGHT)
    valid = clip_mask & priors.caption_mask & has_prior[:, None]
    ref_lrca = _ref_lrca(
        outputs["lrca_clip"],
        priors.caption_emb,
        valid,
        loss_cfg.lrca_window,
        loss_cfg.lrca_text_temperature,
        loss_cfg.lrca_video_temperature,
    )
    torch.testing.assert_close(losses["lrca"], ref_lrca, **TIGHT)
