"""Typed configs of the grounding model and its criterion, validated where they are built.

Both round-trip through JSON (``to_dict`` / ``from_dict``) so a checkpoint folder can store them and
rebuild the model without any other state. Every field's value is checked against its annotated type
when a config is built (:func:`check_types`: a bool is not an int, an int is fine for a float, None
only for optional fields), so a YAML ``true`` or ``"128"`` is a ValueError naming the key and value.
The defaults follow the Moment-DETR / QD-DETR lineage (hidden 256, 2 cross-modal + 2 encoder + 2
decoder layers, 10 queries, 8 heads, dropout 0.1; loss weights span L1 10, gIoU 1, label 4, saliency 1
with margin 0.2). See ``docs/method.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from masra.grounding.config.checks import JsonConfig, check_field_types, non_negative, positive

__all__ = ["PRIOR_DECAY_SCOPES", "PRIOR_PLACEMENTS", "SORA_PLACEMENTS", "LossConfig", "ModelConfig"]

log = logging.getLogger(__name__)

PRIOR_PLACEMENTS = ("video", "cross")
SORA_PLACEMENTS = ("clip", "video")
PRIOR_DECAY_SCOPES = ("all", "labelled")


@dataclass
class ModelConfig(JsonConfig):
    """Architecture of :class:`masra.grounding.model.MasraModel`.

    Attributes:
        video_dim: clip feature size Dv, including the 2 temporal-endpoint dims when they are used.
        text_dim: query token feature size Dt.
        prior_dim: size Dp of the prior embeddings (384 for MiniLM, 512 for CLIP text); the ESTA and
            SGE heads project clip features into this space.
        hidden_dim: model width D.
        num_heads: attention heads in every multi-head block; must divide ``hidden_dim``.
        num_cross_layers / num_encoder_layers / num_decoder_layers: depth of the query-dependent
            cross-modal encoder, the clip encoder and the moment decoder.
        num_queries: learnable moment queries Q.
        ffn_dim: feed-forward width inside the transformer layers.
        dropout: dropout in attention, feed-forward and input projections.
        input_dropout: dropout on the raw video and text features before projection.
        aux_loss: return the intermediate decoder predictions in ``aux_outputs``.
        use_esta / use_lrca / use_sge / use_sora / use_dai: switch the MASRA parts on; ESTA and LRCA
            only add small training heads (and their losses), SGE / SORA / DAI change the forward pass.
        lrca_dim: size of the clip projection whose local similarities LRCA aligns.
        dai_codebook_size: codebook entries K appended to the text keys and values (DAI).
        sora_window: half-width w of the clip neighbourhood SORA attends over; 0 means every clip.
        prior_placement: which clip features the prior losses (ESTA, LRCA, SGE's supervision) shape:
            ``"video"`` (a query-free video encoder before the cross-modal encoder, which then reads
            its output; videos without a labelled query can take part) or ``"cross"`` (the
            query-conditioned features after the clip encoder, as in the first MASRA version).
        num_video_layers: depth of the query-free video encoder (``prior_placement`` ``"video"`` and a
            prior-reading part on); 0 keeps only the projection.
        video_layers_replace: the video encoder's layers take the place of as many clip-encoder
            layers (the clip encoder keeps ``num_encoder_layers - num_video_layers``), so MASRA has the
            baseline's self-attention depth and runs those layers once per video rather than once
            per (video, query) pair in both the matched and the rolled-query pass. False (the video
            encoder adds to the clip encoder) for configs and checkpoints that do not name it.
        semantic_relevance: SGE also scores every clip against the query in the prior space: the
            cosine between the clip's ESTA projection (SGE's prediction when ESTA is off) and a linear
            map of the mean query token, fed to the clip features and the saliency logit (needs
            ``prior_placement`` ``"video"`` and SGE on). The map starts at the identity when the query
            features and the prior embeddings have the same size.
        esta_reads_sge: with SGE on, ESTA's terms read SGE's prediction instead of a head of their own
            (no ESTA MLP; SGE's supervision and ESTA's clip term, then the same term, are computed
            once and weighted by the sum of their weights). A candidate for a cheaper training step
            (docs/benchmarks.md); False in configs and checkpoints that do not name it.
        sora_placement: where SORA runs: ``"clip"`` (after the clip encoder, on the query-conditioned
            features of every (video, query) pair, matched and rolled) or ``"video"`` (on the
            query-free video features before the cross-modal encoder, once per video). A candidate for
            a cheaper training step; ``"clip"`` in configs and checkpoints that do not name it.
        sge_depthwise: SGE's temporal convolution runs per channel (D x 3 weights, not D x D x 3); its
            prediction layer mixes the channels. A candidate for a cheaper training step; False in
            configs and checkpoints that do not name it.
        video_ffn_dim: feed-forward width of the video encoder's layers; None (the default) is
            ``ffn_dim``, 0 leaves the FFN out (attention only). A candidate for a cheaper training step.
        negative_share: share of each training batch that also runs the rolled-query pass (the
            negative pairs, each video under the previous sample's query, that feed the
            ``saliency_neg`` term and the rank term's extra negatives): the first
            ``round(share * B)`` samples of the batch, which the loader shuffles (at least one when
            the share is above 0; 0 runs no negative pass). 1.0 (every sample, the published
            recipe) in configs and checkpoints that do not name it. Inference never runs the pass.
    """

    video_dim: int
    text_dim: int
    prior_dim: int = 384
    hidden_dim: int = 256
    num_heads: int = 8
    num_cross_layers: int = 2
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    num_queries: int = 10
    ffn_dim: int = 1024
    dropout: float = 0.1
    input_dropout: float = 0.5
    aux_loss: bool = True
    use_esta: bool = True
    use_lrca: bool = True
    use_sge: bool = True
    use_sora: bool = True
    use_dai: bool = True
    lrca_dim: int = 128
    dai_codebook_size: int = 8
    sora_window: int = 0
    prior_placement: str = "video"
    num_video_layers: int = 1
    semantic_relevance: bool = True
    video_layers_replace: bool = False
    esta_reads_sge: bool = False
    sora_placement: str = "clip"
    sge_depthwise: bool = False
    video_ffn_dim: int | None = None
    negative_share: float = 1.0

    def __post_init__(self) -> None:
        check_field_types(self)
        owner = type(self).__name__
        positive(
            owner,
            video_dim=self.video_dim,
            text_dim=self.text_dim,
            prior_dim=self.prior_dim,
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            num_queries=self.num_queries,
            ffn_dim=self.ffn_dim,
            lrca_dim=self.lrca_dim,
            dai_codebook_size=self.dai_codebook_size,
        )
        non_negative(
            owner,
            video_ffn_dim=self.video_ffn,
            num_cross_layers=self.num_cross_layers,
            num_encoder_layers=self.num_encoder_layers,
            sora_window=self.sora_window,
            num_video_layers=self.num_video_layers,
        )
        if self.prior_placement not in PRIOR_PLACEMENTS:
            raise ValueError(
                f"{owner}.prior_placement must be one of {PRIOR_PLACEMENTS}, got {self.prior_placement!r}"
            )
        if self.sora_placement not in SORA_PLACEMENTS:
            raise ValueError(
                f"{owner}.sora_placement must be one of {SORA_PLACEMENTS}, got {self.sora_placement!r}"
            )
        if self.num_decoder_layers < 1:
            raise ValueError(f"{owner}.num_decoder_layers must be >= 1, got {self.num_decoder_layers}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"{owner}.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if not 0.0 <= self.negative_share <= 1.0:
            raise ValueError(f"{owner}.negative_share must be in [0, 1], got {self.negative_share!r}")
        for name in ("dropout", "input_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{owner}.{name} must be in [0, 1), got {value!r}")
        if (
            self.video_layers_replace
            and self.video_encoder_on
            and self.num_video_layers > self.num_encoder_layers
        ):
            raise ValueError(
                f"{owner}.video_layers_replace: the video encoder's {self.num_video_layers} layers cannot "
                f"take the place of more than the clip encoder's {self.num_encoder_layers}"
            )
        if self.use_dai and self.num_cross_layers == 0:
            raise ValueError(
                f"{owner}.use_dai needs num_cross_layers >= 1 (DAI lives in the cross attention)"
            )

    @property
    def video_encoder_on(self) -> bool:
        """A query-free video encoder runs before the cross-modal encoder (prior losses shape it)."""
        return self.prior_placement == "video" and (self.use_esta or self.use_lrca or self.use_sge)

    @property
    def clip_encoder_layers(self) -> int:
        """Layers of the clip encoder after the cross-modal encoder (see ``video_layers_replace``)."""
        if self.video_layers_replace and self.video_encoder_on:
            return self.num_encoder_layers - self.num_video_layers
        return self.num_encoder_layers

    @property
    def video_ffn(self) -> int:
        """Feed-forward width of the video encoder's layers (see ``video_ffn_dim``)."""
        return self.ffn_dim if self.video_ffn_dim is None else self.video_ffn_dim

    @property
    def esta_on_sge(self) -> bool:
        """ESTA reads SGE's prediction and has no head of its own (see ``esta_reads_sge``)."""
        return self.esta_reads_sge and self.use_esta and self.use_sge

    @property
    def relevance_on(self) -> bool:
        """SGE's query-semantic relevance runs (see ``semantic_relevance``)."""
        return self.semantic_relevance and self.use_sge and self.prior_placement == "video"

    @property
    def masra_parts(self) -> dict[str, bool]:
        """The five switches by name, e.g. for ablation tables."""
        return {
            "esta": self.use_esta,
            "lrca": self.use_lrca,
            "sge": self.use_sge,
            "sora": self.use_sora,
            "dai": self.use_dai,
        }


@dataclass
class LossConfig(JsonConfig):
    """Matching costs, loss weights and loss hyper-parameters of the criterion.

    Attributes:
        cost_class / cost_span / cost_giou: Hungarian matching cost weights.
        w_span_l1 / w_span_giou / w_label: weights of the matched-span losses and foreground CE.
        eos_coef: weight of the background class in the foreground CE (DETR's "no object" weight).
        w_saliency_margin / w_saliency_rank / w_saliency_neg: weights of the saliency terms.
        saliency_margin: hinge margin between a higher-scored and a lower-scored clip.
        rank_levels: thresholds K of the rank-contrastive term (evenly spaced up to the sample's max).
        rank_temperature: temperature of the rank-contrastive softmax over clips.
        w_esta_event / w_esta_clip: ESTA event-level and clip-level InfoNCE weights.
        esta_temperature: InfoNCE temperature of both ESTA terms (and SGE).
        esta_same_text: cosine of two event-description embeddings at or above which they count as
            the same text; such events are positives of each other in both ESTA terms, not negatives.
        esta_edge_share: share of each prior event's span, at each end, whose clips ESTA's clip-level
            term and SGE's supervision leave out (0 keeps every covered clip): the priors then shape
            the inside of their events and leave the edges, where their spans are least sure, to the
            labels (docs/method.md). ``"auto"`` (the default) sets it when training starts from the
            priors' measured edge error on the labelled training windows
            (:func:`masra.grounding.data.priors.edge_share_from_error`): 0 where the priors' edges are
            exact, about one standard deviation of their jitter where they are not. A criterion built
            with ``"auto"`` and no data to resolve it against uses 0.
        w_sge: weight of SGE's supervision (its prediction against ESTA's clip-level target).
        w_lrca: LRCA weight.
        prior_decay_steps: the prior-loss weights (ESTA, SGE, LRCA) fall from their values to 0 over
            this many optimiser steps, on a half-cosine, and stay 0 after (prior-only videos stop
            too); 0 keeps them constant. The priors then shape the early features and leave the late
            training, where boundaries are refined, to the labels (docs/method.md).
        prior_decay_scope: which videos ``prior_decay_steps`` decays: ``"all"`` (the prior-loss
            weights themselves) or ``"labelled"`` (only videos with a labelled training query drop out
            of the prior losses, each step with probability one minus the half-cosine; videos without
            one keep their priors at the configured weights for the whole run). With every video
            labelled the two agree; with few labels, ``"labelled"`` keeps the priors where they are the
            only supervision (docs/method.md).
        lrca_window: half-width w of the local window (clips ``|i - j| <= w``, ``i != j``).
        lrca_text_temperature / lrca_video_temperature: temperatures of the row softmax of the caption
            relations (target) and of the clip-feature relations (prediction).

    A ``matcher`` key (``scipy`` or ``batched``, the solver of the Hungarian matching until the batched
    solver was removed) is dropped when a config or checkpoint is read: matching is always scipy's.
    """

    cost_class: float = 4.0
    cost_span: float = 10.0
    cost_giou: float = 1.0
    w_span_l1: float = 10.0
    w_span_giou: float = 1.0
    w_label: float = 4.0
    eos_coef: float = 0.1
    w_saliency_margin: float = 1.0
    w_saliency_rank: float = 1.0
    w_saliency_neg: float = 1.0
    saliency_margin: float = 0.2
    rank_levels: int = 12
    rank_temperature: float = 0.5
    w_esta_event: float = 0.5
    w_esta_clip: float = 0.5
    esta_temperature: float = 0.07
    esta_same_text: float = 0.99
    esta_edge_share: float | str = "auto"
    w_sge: float = 0.5
    w_lrca: float = 1.0
    lrca_window: int = 5
    lrca_text_temperature: float = 0.05
    lrca_video_temperature: float = 0.1
    prior_decay_steps: int = 0
    prior_decay_scope: str = "all"

    def __post_init__(self) -> None:
        check_field_types(self)
        owner = type(self).__name__
        non_negative(
            owner,
            cost_class=self.cost_class,
            cost_span=self.cost_span,
            cost_giou=self.cost_giou,
            w_span_l1=self.w_span_l1,
            w_span_giou=self.w_span_giou,
            w_label=self.w_label,
            w_saliency_margin=self.w_saliency_margin,
            w_saliency_rank=self.w_saliency_rank,
            w_saliency_neg=self.w_saliency_neg,
            saliency_margin=self.saliency_margin,
            w_esta_event=self.w_esta_event,
            w_esta_clip=self.w_esta_clip,
            w_sge=self.w_sge,
            w_lrca=self.w_lrca,
        )
        positive(
            owner,
            rank_levels=self.rank_levels,
            rank_temperature=self.rank_temperature,
            esta_temperature=self.esta_temperature,
            lrca_window=self.lrca_window,
            lrca_text_temperature=self.lrca_text_temperature,
            lrca_video_temperature=self.lrca_video_temperature,
        )
        if not isinstance(self.prior_decay_steps, int) or self.prior_decay_steps < 0:
            raise ValueError(
                f"{owner}.prior_decay_steps must be an integer >= 0, got {self.prior_decay_steps!r}"
            )
        if self.prior_decay_scope not in PRIOR_DECAY_SCOPES:
            raise ValueError(
                f"{owner}.prior_decay_scope must be one of {PRIOR_DECAY_SCOPES}, got {self.prior_decay_scope!r}"
            )
        if not -1.0 <= self.esta_same_text <= 1.0:
            raise ValueError(
                f"{owner}.esta_same_text must be a cosine in [-1, 1], got {self.esta_same_text!r}"
            )
        share = self.esta_edge_share
        if share != "auto" and (isinstance(share, (str, bool)) or not 0.0 <= share < 0.5):
            raise ValueError(
                f"{owner}.esta_edge_share must be 'auto' or a number in [0, 0.5) (a share of the span "
                f"at each end), got {share!r}"
            )
        if not 0.0 < self.eos_coef <= 1.0:
            raise ValueError(f"{owner}.eos_coef must be in (0, 1], got {self.eos_coef!r}")
        if self.cost_class + self.cost_span + self.cost_giou == 0:
            raise ValueError(f"{owner}: all matching costs are 0; the matching would be arbitrary")

    @property
    def edge_share(self) -> float:
        """``esta_edge_share`` as a number: ``"auto"`` not yet resolved against data counts as 0."""
        share = self.esta_edge_share
        return 0.0 if isinstance(share, str) else float(share)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossConfig:
        """:meth:`JsonConfig.from_dict`, dropping the retired ``matcher`` key of older checkpoints and
        configs (``scipy``, the only solver left, silently; ``batched`` with a warning)."""
        data = dict(data)
        matcher = data.pop("matcher", "scipy")
        if matcher != "scipy":
            log.warning(
                "loss.matcher %r is no longer read: the Hungarian matching is solved by scipy (the "
                "batched solver was removed, docs/benchmarks.md); the matches are equally optimal",
                matcher,
            )
        return super().from_dict(data)
