"""The MASRA grounding model: the DETR-style baseline plus the switchable MASRA parts.

Forward pass (B videos, L clips, T query tokens, Q moment queries, D width), with
``prior_placement`` ``"video"`` (the default)::

    v = proj_v(video), t = proj_t(text)                             (B, L, D), (B, T, D)
    g = VideoEncoder(v, pos)                                        query-free self-attention over clips
    [SGE]  g, sge_pred = SGE(g)                                     gated semantic residual
    esta_clip = MLP_esta(g), lrca_clip = W_lrca g                   [prior heads: ESTA / LRCA shape g;
                                                                     esta_reads_sge: esta_clip = sge_pred]
    [DAI]  memory = [t ; codebook(g)] else t                        (B, T[+K], D)
    h, attn = CrossModalEncoder(g, memory)                          clips attend to the query
    h = ClipEncoder(h, pos)                                         self-attention over clips
    [SGE]  r = cos(esta_clip, W_q mean(text)); h += W_r r           query-semantic relevance
    [SORA] h = SORA(h)                                              second-order relational attention
                                                                    (sora_placement "video": on g instead,
                                                                    after the prior heads, once per video)
    [DAI]  h, bonus = fuse(h, attn mass on text)
    saliency = SaliencyHead(h) [+ bonuses]                          (B, L)
    decoder(h) -> pred_logits (B, Q, 2), pred_spans (B, Q, 2) per layer

Everything above the cross-modal encoder is query-free, so :meth:`MasraModel.video_semantics` runs it
alone for videos that have priors but no labelled query. With ``prior_placement`` ``"cross"`` there is
no video encoder and SGE and the prior heads read the query-conditioned ``h`` after the clip encoder
(the first MASRA version).

In training mode the query-conditioned part also runs once more on the batch with the query texts
rolled by one (sample b gets the query of sample b - 1); its saliency is ``saliency_neg``. Both runs
share one forward over a 2B batch (B + K with ``negative_share`` below 1: only the first K samples
run the rolled pass). The model never reads priors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from masra.grounding.config import ModelConfig
from masra.grounding.masking import MASKED_LOGIT
from masra.grounding.model.baseline import (
    ClipEncoder,
    CrossModalEncoder,
    InputProjection,
    MomentDecoder,
    SaliencyHead,
)
from masra.grounding.model.dai import ContextCodebook, RelevanceFusion
from masra.grounding.model.layers import MLP, sine_position_encoding
from masra.grounding.model.sge import SemanticGuidedEnhancement, SemanticRelevance
from masra.grounding.model.sora import SecondOrderRelationalAttention

__all__ = ["SALIENCY_PAD", "MasraModel", "build_model"]

SALIENCY_PAD = MASKED_LOGIT  # saliency logits of padded clips
"""What ``saliency`` and ``saliency_neg`` hold at padded clips: finite (no NaN from 0 * -inf), below any
real score, and representable in float16 / bfloat16."""


class MasraModel(nn.Module):
    """Video temporal grounding model; see the module docstring for the data flow."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.hidden_dim
        self.video_proj = InputProjection(cfg.video_dim, dim, cfg.input_dropout, cfg.dropout)
        self.text_proj = InputProjection(cfg.text_dim, dim, cfg.input_dropout, cfg.dropout)
        self.video_first = cfg.video_encoder_on  # prior heads and SGE read the query-free features
        self.video_encoder = (
            ClipEncoder(dim, cfg.num_heads, cfg.video_ffn, cfg.dropout, cfg.num_video_layers)
            if self.video_first and cfg.num_video_layers > 0
            else None
        )
        self.cross_encoder = CrossModalEncoder(
            dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout, cfg.num_cross_layers
        )
        self.clip_encoder = ClipEncoder(dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout, cfg.clip_encoder_layers)
        self.decoder = MomentDecoder(
            dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout, cfg.num_decoder_layers, cfg.num_queries
        )
        self.saliency_head = SaliencyHead(dim)
        self.codebook = ContextCodebook(dim, cfg.dai_codebook_size) if cfg.use_dai else None
        self.relevance = RelevanceFusion(dim) if cfg.use_dai else None
        self.sge = (
            SemanticGuidedEnhancement(dim, cfg.prior_dim, cfg.dropout, cfg.sge_depthwise)
            if cfg.use_sge
            else None
        )
        self.semantic = SemanticRelevance(cfg.text_dim, cfg.prior_dim, dim) if cfg.relevance_on else None
        self.sora = (
            SecondOrderRelationalAttention(dim, cfg.dropout, cfg.sora_window) if cfg.use_sora else None
        )
        self.esta_head = (
            MLP(dim, dim, cfg.prior_dim, num_layers=2) if cfg.use_esta and not cfg.esta_on_sge else None
        )
        self.sora_on_video = cfg.sora_placement == "video"
        self.lrca_head = nn.Linear(dim, cfg.lrca_dim) if cfg.use_lrca else None

    def _prior_heads(
        self, h: Tensor, mask: Tensor, with_esta: bool = True
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """SGE and the prior heads on clip features ``h`` (B, L, D).

        Returns the (SGE-enhanced) features and, per enabled part, ``sge_pred`` (B, L, Dp); in
        training mode ``lrca_clip`` (B, L, Dl) and (``with_esta``) ``esta_clip`` (B, L, Dp), the
        latter also at inference when the semantic relevance reads it (see :meth:`_semantics`).
        """
        out: dict[str, Tensor] = {}
        if self.sge is not None:
            h, out["sge_pred"] = self.sge(h, mask)
        if self.lrca_head is not None and self.training:  # read only by the LRCA loss
            out["lrca_clip"] = self.lrca_head(h)
        if with_esta and (self.training or self.semantic is not None):
            if self.esta_head is not None:
                out["esta_clip"] = self.esta_head(h)
            elif self.cfg.esta_on_sge:  # the same tensor: the criterion computes the term once
                out["esta_clip"] = out["sge_pred"]
        return h, out

    def _semantics(self, heads: dict[str, Tensor]) -> Tensor | None:
        """The clips' semantic projection the relevance reads: ESTA's, else SGE's prediction."""
        if self.semantic is None:
            return None
        return heads["esta_clip"] if "esta_clip" in heads else heads["sge_pred"]

    def _encode_video(
        self, video: Tensor, video_mask: Tensor, pos: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The query-free part: projection, video encoder, SGE and prior heads (placement ``video``)."""
        g = self.video_proj(video)  # (B, L, D)
        if not self.video_first:
            return g, {}
        if self.video_encoder is not None:
            g = self.video_encoder(g, video_mask, pos)
        return self._prior_heads(g, video_mask)

    def video_semantics(self, video: Tensor, video_mask: Tensor) -> dict[str, Tensor]:
        """The prior heads of videos without a query: ``esta_clip``, ``sge_pred``, ``lrca_clip`` per
        enabled part (training mode), for the prior losses of videos that have no labelled query.

        Raises ValueError with ``prior_placement`` ``"cross"`` (the heads then need a query).
        """
        if not self.video_first:
            raise ValueError(
                "video_semantics needs prior_placement 'video' and a prior part on: with 'cross' the "
                "prior heads read query-conditioned features"
            )
        pos = sine_position_encoding(video_mask, self.cfg.hidden_dim).to(video.dtype)  # (B, L, D)
        return self._encode_video(video, video_mask, pos)[1]

    def negatives(self, batch: int) -> int:
        """How many samples of a training batch of ``batch`` also run the rolled-query pass:
        ``round(negative_share * batch)``, at least 1 when the share is above 0."""
        share = self.cfg.negative_share
        return 0 if share == 0 else min(batch, max(1, round(share * batch)))

    def _relevance(self, semantics: Tensor, queries: Tensor, query_mask: Tensor, neg: int) -> Tensor:
        """SGE's relevance (B + K, L) of the matched queries and the first K videos' rolled ones."""
        assert self.semantic is not None
        batch = semantics.shape[0]
        if neg in (0, batch):  # one call: each video's semantics normalised once
            return self.semantic.relevance(semantics, queries, query_mask)
        matched = self.semantic.relevance(semantics, queries[:batch], query_mask[:batch])
        rolled = self.semantic.relevance(semantics[:neg], queries[batch:], query_mask[batch:])
        return torch.cat([matched, rolled])

    def _encode(
        self,
        video: Tensor,
        video_mask: Tensor,
        text: Tensor,
        text_mask: Tensor,
        pos: Tensor,
        semantic_rel: Tensor | None,
    ) -> dict[str, Tensor]:
        """The query-conditioned clip encoding shared by the matched and the negative pass.

        ``video`` (B, L, D) is the query-free encoding; ``semantic_rel`` (B, L) the clips' query-semantic
        relevance (:meth:`SemanticRelevance.relevance`, or None).
        Returns ``clip_feats`` (B, L, D), ``saliency`` (B, L) and, per enabled part, ``dai_relevance``
        and ``semantic_relevance`` (B, L) and (placement ``cross``) the prior heads.
        """
        out: dict[str, Tensor] = {}
        memory, memory_mask = text, text_mask
        if self.codebook is not None:
            entries, entry_mask = self.codebook(video, video_mask)
            memory = torch.cat([text, entries], dim=1)  # (B, T + K, D)
            memory_mask = torch.cat([text_mask, entry_mask], dim=1)
        h, attn = self.cross_encoder(video, memory, memory_mask, need_weights=self.codebook is not None)
        h = self.clip_encoder(h, video_mask, pos)
        if not self.video_first:  # ESTA's head reads the final features (see forward)
            h, heads = self._prior_heads(h, video_mask, with_esta=False)
            out.update(heads)
        bonus = None
        if self.semantic is not None and semantic_rel is not None:
            out["semantic_relevance"] = semantic_rel
            h, bonus = self.semantic(h, semantic_rel)
        if self.sora is not None and not self.sora_on_video:
            h = self.sora(h, video_mask)[0]
        if self.relevance is not None and attn is not None:
            relevance = attn[..., : text.shape[1]].sum(-1)  # (B, L) attention mass on the query words
            out["dai_relevance"] = relevance
            h, dai_bonus = self.relevance(h, relevance)
            bonus = dai_bonus if bonus is None else bonus + dai_bonus
        saliency = self.saliency_head(h)
        if bonus is not None:
            saliency = saliency + bonus
        out["saliency"] = saliency.masked_fill(~video_mask, SALIENCY_PAD)
        out["clip_feats"] = h
        return out

    def forward(self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor) -> dict[str, Any]:
        """Predict moments and saliency.

        Args:
            video: (B, L, Dv) clip features; video_mask: (B, L) bool, True for a real clip.
            text: (B, T, Dt) query token features; text_mask: (B, T) bool, True for a real token.

        Returns:
            ``pred_logits`` (B, Q, 2) with index 0 = foreground; ``pred_spans`` (B, Q, 2) normalised
            (center, width) in (0, 1); ``saliency`` (B, L) logits, :data:`SALIENCY_PAD` at padded clips;
            ``aux_outputs``: one dict with ``pred_logits`` / ``pred_spans`` per intermediate decoder
            layer (empty when ``cfg.aux_loss`` is False); ``clip_feats`` (B, L, D) the decoder memory;
            per enabled part ``sge_pred`` (B, L, Dp), ``dai_relevance`` (B, L) in [0, 1] and
            ``semantic_relevance`` (B, L) in [-1, 1]; in training mode also ``saliency_neg`` (K, L),
            the first K samples' saliency under the query of the previous sample in the batch (K from
            :meth:`negatives`; absent when K is 0), and the loss-only heads
            ``esta_clip`` (B, L, Dp) and ``lrca_clip`` (B, L, Dl).
        """
        if video.shape[:2] != video_mask.shape or text.shape[:2] != text_mask.shape:
            raise ValueError(
                f"mask shapes {tuple(video_mask.shape)}, {tuple(text_mask.shape)} do not match "
                f"video {tuple(video.shape)} / text {tuple(text.shape)}"
            )
        batch = video.shape[0]
        pos = sine_position_encoding(video_mask, self.cfg.hidden_dim).to(video.dtype)  # (B, L, D)
        g, heads = self._encode_video(video, video_mask, pos)  # (B, L, D)
        if self.sora is not None and self.sora_on_video:  # once per video, after the prior heads
            g = self.sora(g, video_mask)[0]
        pos = pos.to(g.dtype)
        t = self.text_proj(text)  # (B, T, D)
        semantics = self._semantics(heads)
        # In training the first K samples also meet the previous sample's query (the rolled-query
        # pass; K = B at the default negative_share): the queries of both passes are [matched; rolled],
        # K + B rows, row B + k holding query k - 1 for video k.
        neg = self.negatives(batch) if self.training else 0
        query_mask = _with_rolled(text_mask, neg)
        semantic_rel = None
        if self.semantic is not None and semantics is not None:
            semantic_rel = self._relevance(semantics, _with_rolled(text, neg), query_mask, neg)

        if neg:
            # One pass over [matched; rolled-query] pairs: (B + K, ...) then split.
            both = self._encode(
                _with_first(g, neg),
                _with_first(video_mask, neg),
                _with_rolled(t, neg),
                query_mask,
                _with_first(pos, neg),
                semantic_rel,
            )
            enc = {key: value[:batch] for key, value in both.items()}
            enc["saliency_neg"] = both["saliency"][batch:]
        else:
            enc = self._encode(g, video_mask, t, text_mask, pos, semantic_rel)

        layers = self.decoder(enc["clip_feats"], video_mask, pos)
        out: dict[str, Any] = dict(enc)
        if not self.training:
            heads.pop("esta_clip", None)  # a loss-only output
        out.update(heads)
        out.update(layers[-1])
        out["aux_outputs"] = layers[:-1] if self.cfg.aux_loss else []
        if not self.video_first and self.esta_head is not None and self.training:
            out["esta_clip"] = self.esta_head(enc["clip_feats"])
        return out


def _with_rolled(x: Tensor, k: int) -> Tensor:
    """(B, ...) -> (B + k, ...): ``x`` then the first ``k`` rows of ``x`` rolled by one sample (row
    ``B + b`` is row ``b - 1``, row ``B`` the last); ``x`` itself when ``k`` is 0."""
    return torch.cat([x, x.roll(1, dims=0)[:k]]) if k else x


def _with_first(x: Tensor, k: int) -> Tensor:
    """(B, ...) -> (B + k, ...): ``x`` then its first ``k`` rows again (the rolled pass's videos)."""
    return torch.cat([x, x[:k]])


def build_model(cfg: ModelConfig) -> MasraModel:
    """The model described by ``cfg``."""
    return MasraModel(cfg)
