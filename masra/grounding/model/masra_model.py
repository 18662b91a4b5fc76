"""The MASRA grounding model: the DETR-style baseline plus the switchable MASRA parts.

Forward pass (B videos, L clips, T query tokens, Q moment queries, D width)::

    v = proj_v(video), t = proj_t(text)                             (B, L, D), (B, T, D)
    [DAI]  memory = [t ; codebook(v)] else t                        (B, T[+K], D)
    h, attn = CrossModalEncoder(v, memory)                          clips attend to the query
    h = ClipEncoder(h, pos)                                         self-attention over clips
    [SGE]  h, sge_pred = SGE(h)                                     gated semantic residual
    lrca_clip = W_lrca h                                            [LRCA head, training signal]
    [SORA] h = SORA(h)                                              second-order relational attention
    [DAI]  h, bonus = fuse(h, r = attn mass on text)
    saliency = SaliencyHead(h) [+ bonus]                            (B, L)
    esta_clip = MLP_esta(h)                                         [ESTA head, prior space]
    decoder(h) -> pred_logits (B, Q, 2), pred_spans (B, Q, 2) per layer

In training mode the query-conditioned part also runs once more on the batch with the query texts
rolled by one (sample b gets the query of sample b - 1); its saliency is ``saliency_neg``. Both runs
share one forward over a 2B batch. The model never reads priors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from masra.grounding.config import ModelConfig
from masra.grounding.model.baseline import (
    ClipEncoder,
    CrossModalEncoder,
    InputProjection,
    MomentDecoder,
    SaliencyHead,
)
from masra.grounding.model.dai import ContextCodebook, RelevanceFusion
from masra.grounding.model.layers import MLP, sine_position_encoding
from masra.grounding.model.sge import SemanticGuidedEnhancement
from masra.grounding.model.sora import SecondOrderRelationalAttention

__all__ = ["SALIENCY_PAD", "MasraModel", "build_model"]

SALIENCY_PAD = -1e4
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
        self.cross_encoder = CrossModalEncoder(
            dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout, cfg.num_cross_layers
        )
        self.clip_encoder = ClipEncoder(dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout, cfg.num_encoder_layers)
        self.decoder = MomentDecoder(
            dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout, cfg.num_decoder_layers, cfg.num_queries
        )
        self.saliency_head = SaliencyHead(dim)
        self.codebook = ContextCodebook(dim, cfg.dai_codebook_size) if cfg.use_dai else None
        self.relevance = RelevanceFusion(dim) if cfg.use_dai else None
        self.sge = SemanticGuidedEnhancement(dim, cfg.prior_dim, cfg.dropout) if cfg.use_sge else None
        self.sora = (
            SecondOrderRelationalAttention(dim, cfg.dropout, cfg.sora_window) if cfg.use_sora else None
        )
        self.esta_head = MLP(dim, dim, cfg.prior_dim, num_layers=2) if cfg.use_esta else None
        self.lrca_head = nn.Linear(dim, cfg.lrca_dim) if cfg.use_lrca else None

    def _encode(
        self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor, pos: Tensor
    ) -> dict[str, Tensor]:
        """The query-conditioned clip encoding shared by the matched and the negative pass.

        Returns ``clip_feats`` (B, L, D), ``saliency`` (B, L) and, per enabled part, ``sge_pred``
        (B, L, Dp), ``lrca_clip`` (B, L, Dl) and ``dai_relevance`` (B, L).
        """
        out: dict[str, Tensor] = {}
        memory, memory_mask = text, text_mask
        if self.codebook is not None:
            entries, entry_mask = self.codebook(video, video_mask)
            memory = torch.cat([text, entries], dim=1)  # (B, T + K, D)
            memory_mask = torch.cat([text_mask, entry_mask], dim=1)
        h, attn = self.cross_encoder(video, memory, memory_mask, need_weights=self.codebook is not None)
        h = self.clip_encoder(h, video_mask, pos)
        if self.sge is not None:
            h, out["sge_pred"] = self.sge(h, video_mask)
        if self.lrca_head is not None and self.training:  # read only by the LRCA loss
            out["lrca_clip"] = self.lrca_head(h)
        if self.sora is not None:
            h = self.sora(h, video_mask)[0]
        bonus = None
        if self.relevance is not None and attn is not None:
            relevance = attn[..., : text.shape[1]].sum(-1)  # (B, L) attention mass on the query words
            out["dai_relevance"] = relevance
            h, bonus = self.relevance(h, relevance)
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
            per enabled part ``sge_pred`` (B, L, Dp) and ``dai_relevance`` (B, L) in [0, 1]; in
            training mode also ``saliency_neg`` (B, L), the saliency under the query of the previous
            sample in the batch, and the loss-only heads ``esta_clip`` (B, L, Dp) and ``lrca_clip``
            (B, L, Dl), which are not computed at inference.
        """
        if video.shape[:2] != video_mask.shape or text.shape[:2] != text_mask.shape:
            raise ValueError(
                f"mask shapes {tuple(video_mask.shape)}, {tuple(text_mask.shape)} do not match "
                f"video {tuple(video.shape)} / text {tuple(text.shape)}"
            )
        batch = video.shape[0]
        v = self.video_proj(video)  # (B, L, D)
        t = self.text_proj(text)  # (B, T, D)
        pos = sine_position_encoding(video_mask, self.cfg.hidden_dim).to(v.dtype)  # (B, L, D)

        if self.training:
            # One pass over [matched; rolled-query] pairs: (2B, ...) then split.
            both = self._encode(
                torch.cat([v, v]),
                torch.cat([video_mask, video_mask]),
                torch.cat([t, t.roll(1, dims=0)]),
                torch.cat([text_mask, text_mask.roll(1, dims=0)]),
                torch.cat([pos, pos]),
            )
            enc = {key: value[:batch] for key, value in both.items()}
            enc["saliency_neg"] = both["saliency"][batch:]
        else:
            enc = self._encode(v, video_mask, t, text_mask, pos)

        layers = self.decoder(enc["clip_feats"], video_mask, pos)
        out: dict[str, Any] = dict(enc)
        out.update(layers[-1])
        out["aux_outputs"] = layers[:-1] if self.cfg.aux_loss else []
        if self.esta_head is not None and self.training:  # read only by the ESTA/SGE losses
            out["esta_clip"] = self.esta_head(enc["clip_feats"])
        return out


def build_model(cfg: ModelConfig) -> MasraModel:
    """The model described by ``cfg``."""
    return MasraModel(cfg)
