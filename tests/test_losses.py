"""Losses on tiny hand-computable cases (golden numbers) and the MASRA prior losses' behaviour."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from _esta import esta_clip_loss, esta_event_loss

from masra.grounding.config import LossConfig, ModelConfig
from masra.grounding.data.batch import Batch, PriorBatch
from masra.grounding.losses import build_criterion, weighted_total
from masra.grounding.losses.esta import (
    EstaTargets,
    edge_clips,
    esta_terms,
    event_membership,
)
from masra.grounding.losses.lrca import local_window, lrca_loss
from masra.grounding.losses.saliency import (
    negative_pair_loss,
    saliency_margin_loss,
    saliency_rank_contrastive_loss,
)

ALL_OFF = dict(use_esta=False, use_lrca=False, use_sge=False, use_sora=False, use_dai=False)


def _criterion(**parts: bool):
    model_cfg = ModelConfig(video_dim=4, text_dim=4, prior_dim=4, hidden_dim=8, num_heads=2, **parts)
    return build_criterion(LossConfig(), model_cfg)


# ---- baseline losses ------------------------------------------------------------------------------------
def test_matched_losses_golden() -> None:
    crit = _criterion(**ALL_OFF)
    outputs = {
        "pred_logits": torch.tensor([[[2.0, 0.0], [0.0, 0.0]]]),
        "pred_spans": torch.tensor([[[0.4, 0.2], [0.9, 0.05]]]),
    }
    targets = [torch.tensor([[0.5, 0.2]])]
    (matched,) = crit._match([outputs], [(torch.tensor([0]), torch.tensor([0]))], torch.cat(targets), [0, 1])
    # |0.4 - 0.5| + |0.2 - 0.2| = 0.1
    assert crit.loss_span_l1(outputs, matched).item() == pytest.approx(0.1, abs=1e-6)
    # (0.3, 0.5) vs (0.4, 0.6): IoU = gIoU = 0.1 / 0.3
    assert crit.loss_span_giou(outputs, matched).item() == pytest.approx(2 / 3, abs=1e-6)
    # fg CE log(1 + e^-2) at weight 1, bg CE log 2 at weight 0.1, weighted mean
    expected = (math.log1p(math.exp(-2)) + 0.1 * math.log(2)) / 1.1
    assert crit.loss_label(outputs, matched).item() == pytest.approx(expected, abs=1e-6)


def test_saliency_losses_golden() -> None:
    mask = torch.ones(1, 3, dtype=torch.bool)
    margin = saliency_margin_loss(torch.tensor([[0.1, 0.2, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]]), mask, 0.2)
    assert margin.item() == pytest.approx(0.4 / 3, abs=1e-6)  # hinges 0.3, 0.1, 0.0 over 3 pairs

    rank = saliency_rank_contrastive_loss(
        torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0]]), mask, levels=2, temperature=1.0
    )
    lse = math.log(math.e + 2)
    assert rank.item() == pytest.approx(((lse - 1) + lse) / 2, abs=1e-6)

    neg = negative_pair_loss(torch.tensor([[0.0, math.log(3.0), 50.0]]), torch.tensor([[True, True, False]]))
    assert neg.item() == pytest.approx((math.log(2) + math.log(4)) / 2, abs=1e-6)


def test_saliency_losses_ignore_padding_and_extra_negatives_count() -> None:
    mask = torch.tensor([[True, True, False]])
    scores, target = torch.tensor([[1.0, 0.0, 99.0]]), torch.tensor([[1.0, 0.0, 5.0]])
    assert saliency_margin_loss(scores, target, mask, 0.2).item() == 0.0
    plain = saliency_rank_contrastive_loss(scores, target, mask, levels=3, temperature=1.0)
    assert plain.item() == pytest.approx(math.log(math.e + 1) - 1, abs=1e-6)
    extra = saliency_rank_contrastive_loss(
        scores, target, mask, levels=3, temperature=1.0, extra_negatives=torch.tensor([[1.0, -1e4, -1e4]])
    )
    assert extra.item() == pytest.approx(math.log(2 * math.e + 1) - 1, abs=1e-6)


def test_criterion_names_weights_and_total() -> None:
    crit = _criterion(**ALL_OFF)
    gen = torch.Generator().manual_seed(0)
    outputs = {
        "pred_logits": torch.randn(2, 3, 2, generator=gen),
        "pred_spans": torch.rand(2, 3, 2, generator=gen),
        "saliency": torch.randn(2, 5, generator=gen),
        "saliency_neg": torch.randn(2, 5, generator=gen),
        "aux_outputs": [{"pred_logits": torch.randn(2, 3, 2), "pred_spans": torch.rand(2, 3, 2)}],
    }
    batch = Batch(
        video=torch.zeros(2, 5, 4),
        video_mask=torch.ones(2, 5, dtype=torch.bool),
        text=torch.zeros(2, 2, 4),
        text_mask=torch.ones(2, 2, dtype=torch.bool),
        spans=[torch.tensor([[0.5, 0.2]]), torch.zeros(0, 2)],
        saliency=torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float32),
    )
    losses = crit(outputs, batch)
    assert set(losses) == {
        "span_l1", "span_giou", "label", "span_l1_0", "span_giou_0", "label_0",
        "saliency_margin", "saliency_rank", "saliency_neg",
    }  # fmt: skip
    assert set(losses) <= set(crit.weights)
    assert (
        crit.weights["span_l1"] == 10.0
        and crit.weights["span_giou_0"] == 1.0
        and crit.weights["label"] == 4.0
    )
    total = weighted_total(losses, crit.weights)
    assert total.item() == pytest.approx(sum(crit.weights[k] * v.item() for k, v in losses.items()), rel=1e-6)
    with pytest.raises(KeyError, match="no weight"):
        weighted_total({"mystery": torch.tensor(1.0)}, crit.weights)
    with pytest.raises(ValueError, match="labelled"):
        crit(
            outputs,
            Batch(video=batch.video, video_mask=batch.video_mask, text=batch.text, text_mask=batch.text_mask),
        )


# ---- ESTA / SGE ---------------------------------------------------------------------------------------
def test_event_membership_centers_and_fallback() -> None:
    clip_mask = torch.tensor([[True] * 4 + [False] * 2])
    spans = torch.tensor([[[0.3, 0.7], [0.0, 0.05], [0.0, 0.0]]])
    member = event_membership(spans, torch.tensor([[True, True, False]]), clip_mask)
    assert member[0].int().tolist() == [[0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0] * 6]


def test_esta_event_loss_golden() -> None:
    # Two events over clips {0, 1} and {2, 3}; pooled features equal the (orthogonal) embeddings.
    emb = torch.eye(2).unsqueeze(0)  # (1, 2, 2)
    clips = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    spans = torch.tensor([[[0.0, 0.5], [0.5, 1.0]]])
    event_mask = torch.ones(1, 2, dtype=torch.bool)
    member = event_membership(spans, event_mask, torch.ones(1, 4, dtype=torch.bool))
    loss = esta_event_loss(clips, member, emb, event_mask, 1.0)
    assert loss.item() == pytest.approx(math.log(math.e + 1) - 1, abs=1e-6)
    clip = esta_clip_loss(clips, member, emb, event_mask, 1.0)
    assert clip.item() == pytest.approx(math.log(math.e + 1) - 1, abs=1e-6)


def _prior_world(seed: int, batch: int = 3, clips: int = 12, events: int = 3, dim: int = 16):
    """Random priors plus clip features that agree with them (each clip = its covering event's text)."""
    gen = torch.Generator().manual_seed(seed)
    edges = torch.tensor([0.0, 0.34, 0.67, 1.0])
    spans = torch.stack([edges[:-1], edges[1:]], dim=-1).expand(batch, events, 2).clone()
    emb = torch.randn(batch, events, dim, generator=gen)
    clip_mask = torch.ones(batch, clips, dtype=torch.bool)
    member = event_membership(spans, torch.ones(batch, events, dtype=torch.bool), clip_mask).float()
    agree = torch.einsum("bel,bed->bld", member, emb)  # (B, L, Dp)
    random = torch.randn(batch, clips, dim, generator=gen)
    return spans, emb, clip_mask, agree, random


@pytest.mark.parametrize("loss_fn", [esta_event_loss, esta_clip_loss])
def test_esta_losses_fall_when_features_agree_with_priors(loss_fn) -> None:
    spans, emb, clip_mask, agree, random = _prior_world(0)
    event_mask = torch.ones(emb.shape[:2], dtype=torch.bool)
    member = event_membership(spans, event_mask, clip_mask)
    low = loss_fn(agree, member, emb, event_mask, 0.07)
    high = loss_fn(random, member, emb, event_mask, 0.07)
    mixed = loss_fn(0.5 * agree + 0.5 * random, member, emb, event_mask, 0.07)
    assert low.item() < 0.05 < high.item()
    assert low.item() < mixed.item() < high.item()


@pytest.mark.parametrize("loss_fn", [esta_event_loss, esta_clip_loss])
def test_esta_same_text_across_videos_is_a_positive(loss_fn) -> None:
    # Every video has the same first description ("the empty background"): with features that agree
    # with the priors the loss is ~0; counting the copies as negatives (threshold above any cosine)
    # leaves it at >= log(number of copies) for those events.
    spans, emb, clip_mask, _, _ = _prior_world(2)
    emb[:, 0] = emb[0, 0]  # one shared text across the 3 videos
    event_mask = torch.ones(emb.shape[:2], dtype=torch.bool)
    member = event_membership(spans, event_mask, clip_mask)
    agree = torch.einsum("bel,bed->bld", member.float(), emb)
    merged = loss_fn(agree, member, emb, event_mask, 0.07)
    separate = loss_fn(agree, member, emb, event_mask, 0.07, same_text_threshold=1.5)
    assert merged.item() < 0.05
    assert separate.item() > 0.3 * math.log(3)


def test_esta_skips_videos_without_priors() -> None:
    spans, emb, clip_mask, _, random = _prior_world(1)
    event_mask = torch.ones(emb.shape[:2], dtype=torch.bool)
    masked = event_mask.clone()
    masked[1] = False  # video 1 has no priors
    member = event_membership(spans, masked, clip_mask)
    keep = [0, 2]
    member_kept = event_membership(spans[keep], event_mask[keep], clip_mask[keep])
    for loss_fn in (esta_event_loss, esta_clip_loss):
        with_skip = loss_fn(random, member, emb, masked, 0.1)
        dropped = loss_fn(random[keep], member_kept, emb[keep], event_mask[keep], 0.1)
        assert with_skip.item() == pytest.approx(dropped.item(), abs=1e-5)


def test_edge_clips_are_the_outer_share_of_each_span() -> None:
    # 10 clips (centers 0.05 ... 0.95); event A (0.0, 0.6) covers clips 0-5, event B (0.6, 1.0) clips
    # 6-9. With 20 % off each end: A keeps (0.12, 0.48) -> clips 1-4, B keeps (0.68, 0.92) -> 7-8.
    clip_mask = torch.ones(1, 10, dtype=torch.bool)
    spans = torch.tensor([[[0.0, 0.6], [0.6, 1.0], [0.0, 0.02]]])
    event_mask = torch.tensor([[True, True, True]])
    member = event_membership(spans, event_mask, clip_mask)
    edge = edge_clips(member, spans, event_mask, clip_mask, 0.2)
    # The third event is too short for a center: it keeps its midpoint clip 0 whole (no edge of its
    # own), but clip 0 is still on A's edge.
    assert edge[0].int().tolist() == [1, 0, 0, 0, 0, 1, 1, 0, 0, 1]
    assert not edge_clips(member, spans, event_mask, clip_mask, 0.0).any()


def test_esta_edge_share_leaves_the_edges_out_of_the_clip_term_only() -> None:
    spans, emb, clip_mask, agree, random = _prior_world(7)
    event_mask = torch.ones(emb.shape[:2], dtype=torch.bool)
    member = event_membership(spans, event_mask, clip_mask)
    keep = ~edge_clips(member, spans, event_mask, clip_mask, 0.25)
    assert 0 < int(keep.sum()) < keep.numel()
    # Features that are random exactly at the edges and agree inside: with the edges left out the
    # clip term is as low as for features that agree everywhere; with them in, it is higher.
    edged = torch.where(keep[..., None], agree, random)
    whole = EstaTargets.build(member, emb, event_mask)
    inner = EstaTargets.build(member, emb, event_mask, clip_keep=keep)
    (agree_whole,) = esta_terms(inner, 0.07, clip_projs=[agree])[1]
    (edged_inner,) = esta_terms(inner, 0.07, clip_projs=[edged])[1]
    (edged_whole,) = esta_terms(whole, 0.07, clip_projs=[edged])[1]
    assert edged_inner.item() == pytest.approx(agree_whole.item(), abs=1e-6)
    assert edged_whole.item() > edged_inner.item() + 0.1
    # The event term pools whole spans either way.
    ev_whole = esta_terms(whole, 0.07, event_proj=edged)[0]
    ev_inner = esta_terms(inner, 0.07, event_proj=edged)[0]
    assert ev_whole is not None and ev_inner is not None
    assert ev_whole.item() == pytest.approx(ev_inner.item(), abs=1e-6)


def test_criterion_reads_the_edge_share() -> None:
    model_cfg = ModelConfig(video_dim=4, text_dim=4, prior_dim=4, hidden_dim=8, num_heads=2)
    batch, outputs = _batch_with_priors([True, True, True])
    plain = build_criterion(LossConfig(), model_cfg)(outputs, batch)
    edged = build_criterion(LossConfig(esta_edge_share=0.3), model_cfg)(outputs, batch)
    assert edged["esta_clip"].item() != pytest.approx(plain["esta_clip"].item(), abs=1e-6)
    assert edged["esta_event"].item() == pytest.approx(plain["esta_event"].item(), abs=1e-6)
    with pytest.raises(ValueError, match="esta_edge_share"):
        LossConfig(esta_edge_share=0.5)


# ---- LRCA --------------------------------------------------------------------------------------------
def test_local_window() -> None:
    win = local_window(torch.tensor([[True, True, True, False]]), 1)[0].int().tolist()
    assert win == [[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]


def test_lrca_zero_when_relations_match_and_golden() -> None:
    gen = torch.Generator().manual_seed(2)
    captions = torch.randn(2, 10, 16, generator=gen)
    valid = torch.ones(2, 10, dtype=torch.bool)
    rotation = torch.linalg.qr(torch.randn(16, 16, generator=gen))[0]
    # A rotation keeps every cosine, so equal temperatures give KL 0.
    assert lrca_loss(captions @ rotation, captions, valid, 3, 0.1, 0.1).item() == pytest.approx(0.0, abs=1e-5)
    # Hand case: three clips, window 1 -> only the middle row has two neighbours.
    caps = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    loss = lrca_loss(feats, caps, torch.ones(1, 3, dtype=torch.bool), 1, 1.0, 1.0)
    p = F.softmax(torch.tensor([1.0, 0.0]), 0)  # row 1: captions relate to clip 0, not clip 2
    q = F.softmax(torch.tensor([0.0, 1.0]), 0)  # features relate to clip 2
    kl_mid = (p * (p.log() - q.log())).sum().item()
    assert loss.item() == pytest.approx(kl_mid / 3, abs=1e-6)  # rows 0 and 2 have one neighbour: KL 0


def test_lrca_falls_when_features_agree_with_captions() -> None:
    gen = torch.Generator().manual_seed(3)
    # Captions change slowly within segments, like real clip captions.
    segments = torch.randn(2, 4, 16, generator=gen).repeat_interleave(5, dim=1)
    captions = segments + 0.3 * torch.randn(2, 20, 16, generator=gen)
    valid = torch.ones(2, 20, dtype=torch.bool)
    projection = torch.randn(16, 32, generator=gen)
    agree = lrca_loss(captions @ projection, captions, valid, 5, 0.05, 0.1)
    random = lrca_loss(torch.randn(2, 20, 32, generator=gen), captions, valid, 5, 0.05, 0.1)
    assert agree.item() < 0.5 * random.item()


# ---- prior losses through the criterion -------------------------------------------------------------------
def _batch_with_priors(has_prior: list[bool]) -> tuple[Batch, dict[str, torch.Tensor]]:
    spans, emb, clip_mask, agree, _ = _prior_world(4, batch=len(has_prior))
    batch_size, clips, _dim = agree.shape
    priors = PriorBatch(
        event_spans=spans,
        event_emb=emb,
        event_mask=torch.ones(emb.shape[:2], dtype=torch.bool),
        caption_emb=agree,
        caption_mask=clip_mask.clone(),
        has_prior=torch.tensor(has_prior),
    )
    batch = Batch(
        video=torch.zeros(batch_size, clips, 4),
        video_mask=clip_mask,
        text=torch.zeros(batch_size, 2, 4),
        text_mask=torch.ones(batch_size, 2, dtype=torch.bool),
        spans=[torch.tensor([[0.5, 0.2]])] * batch_size,
        saliency=torch.rand(batch_size, clips),
        priors=priors,
    )
    gen = torch.Generator().manual_seed(5)
    outputs = {
        "pred_logits": torch.randn(batch_size, 3, 2, generator=gen),
        "pred_spans": torch.rand(batch_size, 3, 2, generator=gen),
        "saliency": torch.randn(batch_size, clips, generator=gen),
        "aux_outputs": [],
        "esta_clip": torch.randn(batch_size, clips, 16, generator=gen, requires_grad=True),
        "sge_pred": torch.randn(batch_size, clips, 16, generator=gen, requires_grad=True),
        "lrca_clip": torch.randn(batch_size, clips, 8, generator=gen, requires_grad=True),
    }
    return batch, outputs


def test_criterion_prior_losses_present_only_with_priors() -> None:
    crit = _criterion(use_esta=True, use_lrca=True, use_sge=True, use_sora=False, use_dai=False)
    batch, outputs = _batch_with_priors([True, False, True])
    prior_names = {"esta_event", "esta_clip", "sge", "lrca"}
    with_priors = crit(outputs, batch)
    assert prior_names <= set(with_priors) and all(with_priors[n].item() > 0 for n in prior_names)
    without = crit(outputs, replace(batch, priors=None, prior_videos=None))
    assert not prior_names & set(without)
    for name in without:
        assert torch.equal(without[name], with_priors[name])

    none_have = crit(outputs, _batch_with_priors([False, False, False])[0])
    for name in prior_names:
        assert none_have[name].item() == 0.0
        none_have[name].backward(retain_graph=True)  # attached to the graph: heads get (zero) gradients
    assert outputs["esta_clip"].grad is not None and float(outputs["esta_clip"].grad.abs().sum()) == 0.0

    off = _criterion(**ALL_OFF)
    assert not prior_names & set(off(outputs, batch)) and not prior_names & set(off.weights)


def test_esta_clip_loss_stacked_equals_separate() -> None:
    spans, emb, clip_mask, agree, random = _prior_world(6)
    event_mask = torch.ones(emb.shape[:2], dtype=torch.bool)
    member = event_membership(spans, event_mask, clip_mask)
    stacked = esta_clip_loss(torch.stack([agree, random]), member, emb, event_mask, 0.1)
    assert stacked.shape == (2,)
    torch.testing.assert_close(stacked[0], esta_clip_loss(agree, member, emb, event_mask, 0.1))
    torch.testing.assert_close(stacked[1], esta_clip_loss(random, member, emb, event_mask, 0.1))


def test_all_decoder_layers_matched_in_one_call_equal_layer_by_layer() -> None:
    gen = torch.Generator().manual_seed(7)
    crit = _criterion(**ALL_OFF)
    bsz, queries, clips = 4, 5, 6

    def layer() -> dict[str, torch.Tensor]:
        return {
            "pred_logits": torch.randn(bsz, queries, 2, generator=gen),
            "pred_spans": torch.rand(bsz, queries, 2, generator=gen) * 0.5 + 0.1,
        }

    outputs: dict = {**layer(), "aux_outputs": [layer(), layer()]}
    outputs["saliency"] = torch.randn(bsz, clips, generator=gen)
    spans = [torch.rand(n, 2, generator=gen) * 0.4 + 0.2 for n in (1, 3, 0, 2)]
    batch = Batch(
        video=torch.zeros(bsz, clips, 4),
        video_mask=torch.ones(bsz, clips, dtype=torch.bool),
        text=torch.zeros(bsz, 3, 4),
        text_mask=torch.ones(bsz, 3, dtype=torch.bool),
        spans=spans,
        saliency=torch.rand(bsz, clips, generator=gen),
    )
    losses = crit(outputs, batch)
    all_targets = torch.cat(spans)
    offsets = [0, 1, 4, 4, 6]
    stages = [("", outputs)] + [(f"_{i}", aux) for i, aux in enumerate(outputs["aux_outputs"])]
    for suffix, out in stages:
        indices = crit.matcher(out["pred_logits"], out["pred_spans"], spans)
        (matched,) = crit._match([out], indices, all_targets, offsets)
        assert losses["span_l1" + suffix].item() == pytest.approx(
            crit.loss_span_l1(out, matched).item(), rel=1e-6
        )
        assert losses["span_giou" + suffix].item() == pytest.approx(
            crit.loss_span_giou(out, matched).item(), rel=1e-6
        )
        assert losses["label" + suffix].item() == pytest.approx(
            crit.loss_label(out, matched).item(), rel=1e-6
        )
    # the layers differ, so equal losses above are not one layer's numbers repeated
    assert losses["span_l1"].item() != pytest.approx(losses["span_l1_0"].item())


# ---- normaliser under torch.distributed ---------------------------------------------------------------
_RANK_SPANS = ((1, 3), (0, 2, 0))  # rank 0 holds 4 target spans, rank 1 holds 2: global mean 3


def _rank_inputs(rank: int) -> tuple[dict, Batch]:
    """Rank ``rank``'s outputs (with one intermediate layer) and batch; the same on every call."""
    gen = torch.Generator().manual_seed(100 + rank)
    counts = _RANK_SPANS[rank]
    bsz, queries, clips = len(counts), 5, 6

    def layer() -> dict[str, torch.Tensor]:
        return {
            "pred_logits": torch.randn(bsz, queries, 2, generator=gen),
            "pred_spans": torch.rand(bsz, queries, 2, generator=gen) * 0.5 + 0.1,
        }

    outputs: dict = {**layer(), "aux_outputs": [layer()], "saliency": torch.randn(bsz, clips, generator=gen)}
    batch = Batch(
        video=torch.zeros(bsz, clips, 4),
        video_mask=torch.ones(bsz, clips, dtype=torch.bool),
        text=torch.zeros(bsz, 3, 4),
        text_mask=torch.ones(bsz, 3, dtype=torch.bool),
        spans=[torch.rand(n, 2, generator=gen) * 0.4 + 0.2 for n in counts],
        saliency=torch.rand(bsz, clips, generator=gen),
    )
    return outputs, batch


def _distributed_rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One simulated process: gloo on CPU; saves its losses, normalisers and all_reduce count."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        crit = _criterion(**ALL_OFF)
        normalisers: list[float] = []
        span_l1 = crit.matched_map["span_l1"]

        def spy_l1(outputs, matched):  # records the normaliser every layer divides by
            normalisers.append(float(matched.num_spans))
            return span_l1(outputs, matched)

        crit.matched_map["span_l1"] = spy_l1
        reduces = 0
        all_reduce = dist.all_reduce

        def counting_all_reduce(*args, **kwargs):
            nonlocal reduces
            reduces += 1
            return all_reduce(*args, **kwargs)

        dist.all_reduce = counting_all_reduce
        try:
            losses = crit(*_rank_inputs(rank))
        finally:
            dist.all_reduce = all_reduce
        torch.save(
            {
                "losses": {k: v.detach() for k, v in losses.items()},
                "normalisers": normalisers,
                "reduces": reduces,
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_span_normaliser_is_all_reduced_across_processes(tmp_path) -> None:
    import torch.multiprocessing as mp

    world = len(_RANK_SPANS)
    mp.spawn(_distributed_rank, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]

    # one all_reduce per step (not per layer); every rank and layer divides by the mean count, 3
    assert [r["reduces"] for r in ranks] == [1, 1]
    assert [r["normalisers"] for r in ranks] == [[3.0, 3.0], [3.0, 3.0]]

    crit = _criterion(**ALL_OFF)
    inputs = [_rank_inputs(r) for r in range(world)]
    for rank, (outputs, batch) in enumerate(inputs):  # each rank: its own sums over the global mean count
        local = crit(outputs, batch)
        for name in ("span_l1", "span_giou", "span_l1_0", "span_giou_0"):
            expected = local[name] * sum(_RANK_SPANS[rank]) / 3
            torch.testing.assert_close(ranks[rank]["losses"][name], expected)
        # the losses that do not count targets are the rank's own
        for name in ("label", "label_0", "saliency_margin", "saliency_rank"):
            torch.testing.assert_close(ranks[rank]["losses"][name], local[name])

    # DDP averages the ranks' gradients: the mean of the ranks' span losses is the loss of one
    # process on the concatenated batch (sum of every rank's numerator / global count)
    (out0, b0), (out1, b1) = inputs

    def cat(key: str, a: dict, b: dict) -> torch.Tensor:
        return torch.cat([a[key], b[key]])

    def cat_layer(a: dict, b: dict) -> dict:
        return {k: cat(k, a, b) for k in ("pred_logits", "pred_spans")}

    joint_out = {
        **cat_layer(out0, out1),
        "aux_outputs": [cat_layer(out0["aux_outputs"][0], out1["aux_outputs"][0])],
        "saliency": cat("saliency", out0, out1),
    }
    joint_batch = Batch(
        video=torch.cat([b0.video, b1.video]),
        video_mask=torch.cat([b0.video_mask, b1.video_mask]),
        text=torch.cat([b0.text, b1.text]),
        text_mask=torch.cat([b0.text_mask, b1.text_mask]),
        spans=[*b0.spans, *b1.spans],
        saliency=torch.cat([b0.saliency, b1.saliency]),
    )
    joint = crit(joint_out, joint_batch)
    for name in ("span_l1", "span_giou", "span_l1_0", "span_giou_0"):
        mean = (ranks[0]["losses"][name] + ranks[1]["losses"][name]) / world
        torch.testing.assert_close(mean, joint[name])
