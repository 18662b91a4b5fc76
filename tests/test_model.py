"""The grounding model: configs, shapes with every MASRA part on and off, padding invariance,
independence from priors, and overfitting one batch."""

from __future__ import annotations

import pytest
import torch

from masra.grounding.config import LossConfig, ModelConfig
from masra.grounding.data.batch import Batch, PriorBatch
from masra.grounding.losses import build_criterion, weighted_total
from masra.grounding.model import SALIENCY_PAD, build_model
from masra.grounding.spans import paired_iou, span_cxw_to_xx

PARTS = ("use_esta", "use_lrca", "use_sge", "use_sora", "use_dai")
B, L, T, DV, DT, DP = 3, 10, 5, 20, 12, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**overrides: object) -> ModelConfig:
    base: dict[str, object] = dict(
        video_dim=DV, text_dim=DT, prior_dim=DP, hidden_dim=32, num_heads=4, ffn_dim=64, lrca_dim=8,
        dai_codebook_size=3,
    )  # fmt: skip
    base.update(overrides)
    return ModelConfig(**base)  # type: ignore[arg-type]


def _batch(seed: int = 0, with_priors: bool = True) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    video_mask = torch.ones(B, L, dtype=torch.bool)
    video_mask[1, 7:] = False
    text_mask = torch.ones(B, T, dtype=torch.bool)
    text_mask[2, 3:] = False
    spans = [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.6, 0.3], [0.15, 0.1]]), torch.tensor([[0.75, 0.3]])]
    centers = (torch.arange(L) + 0.5) / video_mask.sum(1, keepdim=True)  # (B, L)
    saliency = torch.zeros(B, L)
    for b, sample in enumerate(spans):
        for center, width in sample:
            saliency[b] += ((centers[b] - center).abs() <= width / 2).float() * video_mask[b]
    priors = PriorBatch(
        event_spans=torch.tensor([[0.0, 0.4], [0.4, 1.0]]).expand(B, 2, 2).clone(),
        event_emb=torch.randn(B, 2, DP, generator=gen),
        event_mask=torch.ones(B, 2, dtype=torch.bool),
        caption_emb=torch.randn(B, L, DP, generator=gen),
        caption_mask=video_mask.clone(),
        has_prior=torch.tensor([True, True, False]),
    )
    return Batch(
        video=torch.randn(B, L, DV, generator=gen),
        video_mask=video_mask,
        text=torch.randn(B, T, DT, generator=gen),
        text_mask=text_mask,
        spans=spans,
        saliency=saliency,
        priors=priors if with_priors else None,
    )


def _run(model: torch.nn.Module, batch: Batch) -> dict:
    return model(batch.video, batch.video_mask, batch.text, batch.text_mask)


# ---- configs ----------------------------------------------------------------------------------------------
def test_configs_round_trip_and_validate() -> None:
    cfg = _cfg(use_sora=False, sora_window=4)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    loss = LossConfig(w_lrca=0.3, lrca_window=2)
    assert LossConfig.from_dict(loss.to_dict()) == loss
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "hiden_dim": 3})
    with pytest.raises(ValueError, match="divisible by num_heads"):
        _cfg(hidden_dim=30)
    with pytest.raises(ValueError, match="dropout"):
        _cfg(dropout=1.0)
    with pytest.raises(ValueError, match="video_dim"):
        _cfg(video_dim=0)
    with pytest.raises(ValueError, match="use_dai"):
        _cfg(num_cross_layers=0, use_dai=True)
    with pytest.raises(ValueError, match="eos_coef"):
        LossConfig(eos_coef=0.0)
    with pytest.raises(ValueError, match="w_span_l1"):
        LossConfig(w_span_l1=-1.0)


def test_defaults_are_the_published_ones() -> None:
    cfg, loss = ModelConfig(video_dim=2818, text_dim=512), LossConfig()
    assert (cfg.hidden_dim, cfg.num_heads, cfg.num_queries, cfg.dropout) == (256, 8, 10, 0.1)
    assert (cfg.num_cross_layers, cfg.num_encoder_layers, cfg.num_decoder_layers) == (2, 2, 2)
    assert (loss.w_span_l1, loss.w_span_giou, loss.w_label, loss.w_saliency_margin) == (10.0, 1.0, 4.0, 1.0)
    assert loss.saliency_margin == 0.2


# ---- shapes -------------------------------------------------------------------------------------------
# All off, all on, each part alone and each part removed: the ablation grid (12 of the 32 combinations).
_COMBOS = sorted(
    {(False,) * 5, (True,) * 5}
    | {tuple(i == j for j in range(5)) for i in range(5)}
    | {tuple(i != j for j in range(5)) for i in range(5)}
)


@pytest.mark.parametrize("flags", _COMBOS, ids=lambda f: "".join("01"[x] for x in f))
def test_shapes_with_every_part_on_and_off(flags: tuple[bool, ...]) -> None:
    torch.manual_seed(0)
    cfg = _cfg(**dict(zip(PARTS, flags, strict=True)))
    model = build_model(cfg)
    batch = _batch()
    out = _run(model.train(), batch)
    assert out["pred_logits"].shape == (B, 10, 2) and out["pred_spans"].shape == (B, 10, 2)
    assert out["saliency"].shape == out["saliency_neg"].shape == (B, L)
    assert out["clip_feats"].shape == (B, L, 32)
    assert len(out["aux_outputs"]) == cfg.num_decoder_layers - 1
    assert bool(((out["pred_spans"] > 0) & (out["pred_spans"] < 1)).all())
    expected = {
        "esta_clip": (B, L, DP),
        "sge_pred": (B, L, DP),
        "lrca_clip": (B, L, 8),
        "dai_relevance": (B, L),
    }
    present = {
        "esta_clip": cfg.use_esta,
        "sge_pred": cfg.use_sge,
        "lrca_clip": cfg.use_lrca,
        "dai_relevance": cfg.use_dai,
    }
    for key, shape in expected.items():
        assert (key in out) == present[key]
        if present[key]:
            assert out[key].shape == shape
    # Every parameter is used: the criterion's losses reach all of them (needed by distributed training).
    crit = build_criterion(LossConfig(), cfg)
    weighted_total(crit(out, batch), crit.weights).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused
    eval_out = _run(model.eval(), batch)
    assert "saliency_neg" not in eval_out
    assert bool((eval_out["saliency"][~batch.video_mask] == SALIENCY_PAD).all())
    assert torch.isfinite(eval_out["saliency"]).all() and torch.isfinite(eval_out["pred_spans"]).all()


def test_dai_relevance_is_a_fraction() -> None:
    out = _run(build_model(_cfg()).eval(), _batch())
    rel = out["dai_relevance"]
    assert bool(((rel > 0) & (rel < 1)).all())


def test_eval_is_padding_invariant_and_batched_equals_single() -> None:
    torch.manual_seed(0)
    model = build_model(_cfg()).eval()
    batch = _batch()
    out = _run(model, batch)
    b, n, t = 1, int(batch.video_mask[1].sum()), int(batch.text_mask[1].sum())
    single = model(
        batch.video[b : b + 1, :n],
        batch.video_mask[b : b + 1, :n],
        batch.text[b : b + 1, :t],
        batch.text_mask[b : b + 1, :t],
    )
    torch.testing.assert_close(single["pred_spans"][0], out["pred_spans"][b], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(single["pred_logits"][0], out["pred_logits"][b], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(single["saliency"][0], out["saliency"][b, :n], atol=1e-5, rtol=1e-4)


# ---- priors never reach the model ---------------------------------------------------------------------
@pytest.mark.parametrize("training", [False, True])
def test_outputs_identical_with_and_without_priors(training: bool) -> None:
    model = build_model(_cfg()).train(training)
    with_priors, without = _batch(with_priors=True), _batch(with_priors=False)
    torch.manual_seed(1)
    out_a = _run(model, with_priors)
    torch.manual_seed(1)
    out_b = _run(model, without)
    assert out_a.keys() == out_b.keys()
    for key, value in out_a.items():
        if key == "aux_outputs":
            for aux_a, aux_b in zip(value, out_b[key], strict=True):
                assert all(torch.equal(aux_a[k], aux_b[k]) for k in aux_a)
        else:
            assert torch.equal(value, out_b[key]), key
    if training:
        crit = build_criterion(LossConfig(), model.cfg)
        losses_a, losses_b = crit(out_a, with_priors), crit(out_b, without)
        assert {"esta_event", "esta_clip", "sge", "lrca"} <= set(losses_a)
        assert set(losses_b) == set(losses_a) - {"esta_event", "esta_clip", "sge", "lrca"}
    else:  # the loss-only heads do not run at inference
        assert "esta_clip" not in out_a and "lrca_clip" not in out_a


# ---- learning -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("masra", [False, True], ids=["baseline", "masra"])
def test_overfits_one_batch(masra: bool) -> None:
    torch.manual_seed(0)
    cfg = _cfg(dropout=0.0, input_dropout=0.0, **dict.fromkeys(PARTS, masra))
    model = build_model(cfg)
    crit = build_criterion(LossConfig(), cfg)
    batch = _batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    totals = []
    for _ in range(120):
        total = weighted_total(crit(_run(model, batch), batch), crit.weights)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.25 * totals[0]
    out = _run(model.eval(), batch)
    best = out["pred_logits"].softmax(-1)[..., 0].argmax(1)  # (B,) most confident query
    for b, target in enumerate(batch.spans or []):
        pred = span_cxw_to_xx(out["pred_spans"][b, best[b]])
        iou = paired_iou(pred[None], span_cxw_to_xx(target)).max().item()
        assert iou > 0.7, (b, iou)


def test_bf16_autocast_gives_finite_losses_and_float32_losses() -> None:
    torch.manual_seed(0)
    model = build_model(_cfg())
    crit = build_criterion(LossConfig(), model.cfg)
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _run(model, batch)
        losses = crit(out, batch)
    assert out["pred_spans"].dtype == torch.bfloat16  # autocast reached the heads
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    weighted_total(losses, crit.weights).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.slow
@pytest.mark.parametrize("training", [False, True])
def test_dynamo_captures_the_forward_in_one_graph(training: bool) -> None:
    """No data-dependent shapes or Python-side tensor reads: torch.compile sees one graph."""
    model = build_model(_cfg()).train(training)
    batch = _batch()
    explained = torch._dynamo.explain(model)(batch.video, batch.video_mask, batch.text, batch.text_mask)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_prior_losses_on_inference_outputs_are_a_clear_error() -> None:
    model = build_model(_cfg()).eval()
    crit = build_criterion(LossConfig(), model.cfg)
    batch = _batch(with_priors=True)
    with pytest.raises(ValueError, match=r"esta_clip.*training mode"):
        crit(_run(model, batch), batch)


def test_criterion_inputs_name_everything_the_criterion_reads() -> None:
    # The trainer hands the criterion only CRITERION_INPUTS; optional outputs are read with .get(),
    # so a missing name would silently drop a loss term rather than fail. Same losses, same names:
    from masra.grounding.losses.criterion import CRITERION_INPUTS

    torch.manual_seed(0)
    model = build_model(_cfg()).train()
    crit = build_criterion(LossConfig(), model.cfg)
    batch = _batch()
    torch.manual_seed(1)
    out = _run(model, batch)
    assert set(out) - CRITERION_INPUTS  # there are outputs the criterion does not read
    full = crit(out, batch)
    kept = crit({k: v for k, v in out.items() if k in CRITERION_INPUTS}, batch)
    assert full.keys() == kept.keys() and {"saliency_neg", "lrca", "esta_event", "sge"} <= full.keys()
    assert all(torch.equal(full[k], kept[k]) for k in full)


def test_video_layers_can_take_the_place_of_clip_encoder_layers() -> None:
    added, replaced = build_model(_cfg()), build_model(_cfg(video_layers_replace=True))
    assert len(added.clip_encoder.layers) == 2 and len(replaced.clip_encoder.layers) == 1
    assert added.video_encoder is not None and replaced.video_encoder is not None
    # The baseline has no video encoder: nothing to replace.
    baseline = _cfg(video_layers_replace=True, **{p: False for p in PARTS})
    assert baseline.clip_encoder_layers == 2 and len(build_model(baseline).clip_encoder.layers) == 2
    b = _batch()
    replaced.train()
    out = replaced(b.video, b.video_mask, b.text, b.text_mask)
    assert out["pred_spans"].shape == (B, 10, 2) and out["saliency"].shape == (B, L)
    assert _cfg(video_layers_replace=True, num_video_layers=2).clip_encoder_layers == 0
    with pytest.raises(ValueError, match="video_layers_replace"):
        _cfg(video_layers_replace=True, num_video_layers=3)
