"""The baseline parts of the grounding model (Moment-DETR / QD-DETR lineage).

* :class:`InputProjection`: dropout, LayerNorm and a small MLP from raw features to width D.
* :class:`CrossModalEncoder`: query-dependent clip features; every clip attends to the query tokens
  (optionally extended by extra key/value entries, which is where DAI's codebook plugs in).
* :class:`ClipEncoder`: a transformer encoder over the clips with sine positional encoding.
* :class:`MomentDecoder`: learnable moment queries attend to the clip memory; every layer predicts
  foreground logits and normalised (center, width) spans through shared heads.
* :class:`SaliencyHead`: one score per clip.
"""

from __future__ import annotations

from torch import Tensor, nn

from masra.grounding.model.layers import MLP, CrossAttentionLayer, DecoderLayer, SelfAttentionLayer

__all__ = ["ClipEncoder", "CrossModalEncoder", "InputProjection", "MomentDecoder", "SaliencyHead"]


class InputProjection(nn.Module):
    """(…, in_dim) raw features -> (…, dim): dropout, LayerNorm, 2-layer MLP."""

    def __init__(self, in_dim: int, dim: int, input_dropout: float, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(input_dropout),
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.LayerNorm(dim),
            nn.Linear(dim, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CrossModalEncoder(nn.Module):
    """Clips attend to the query tokens (and to any extra entries), layer after layer."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            CrossAttentionLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )

    def forward(
        self, clips: Tensor, memory: Tensor, memory_mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Run all layers.

        Args:
            clips: (B, L, D) projected clip features.
            memory: (B, S, D) keys/values: the T text tokens, possibly followed by extra entries.
            memory_mask: (B, S) bool, True for a real entry.
            need_weights: also return the last layer's attention.

        Returns:
            (B, L, D) query-dependent clip features and, when asked for, the last layer's
            head-averaged attention (B, L, S); None otherwise or when there are no layers.
        """
        weights: Tensor | None = None
        for i, layer in enumerate(self.layers):
            clips, weights = layer(clips, memory, memory_mask, need_weights and i == len(self.layers) - 1)
        return clips, weights


class ClipEncoder(nn.Module):
    """Transformer encoder over the clips."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            SelfAttentionLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )

    def forward(self, x: Tensor, mask: Tensor, pos: Tensor) -> Tensor:
        """x (B, L, D), mask (B, L), pos (B, L, D) -> (B, L, D)."""
        for layer in self.layers:
            x = layer(x, mask, pos)
        return x


class MomentDecoder(nn.Module):
    """Learnable moment queries decoded against the clip memory.

    Every layer's output goes through one shared LayerNorm, a foreground/background classifier and a
    3-layer span MLP with a sigmoid, so the intermediate layers give the auxiliary predictions.
    """

    def __init__(
        self, dim: int, num_heads: int, ffn_dim: int, dropout: float, num_layers: int, num_queries: int
    ) -> None:
        super().__init__()
        self.query_embed = nn.Embedding(num_queries, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.class_head = nn.Linear(dim, 2)
        self.span_head = MLP(dim, dim, 2, num_layers=3)

    def forward(self, memory: Tensor, mask: Tensor, pos: Tensor) -> list[dict[str, Tensor]]:
        """Decode.

        Args:
            memory: (B, L, D) clip memory; mask (B, L); pos (B, L, D) positional encoding.

        Returns:
            One dict per layer (last = final prediction) with ``pred_logits`` (B, Q, 2), index 0 =
            foreground, and ``pred_spans`` (B, Q, 2) normalised (center, width) in (0, 1).
        """
        batch = memory.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)  # (B, Q, D)
        tgt = query_pos.new_zeros(query_pos.shape).to(memory.dtype)
        outputs = []
        for layer in self.layers:
            tgt = layer(tgt, query_pos, memory, mask, pos)
            hidden = self.norm(tgt)
            outputs.append(
                {"pred_logits": self.class_head(hidden), "pred_spans": self.span_head(hidden).sigmoid()}
            )
        return outputs


class SaliencyHead(nn.Module):
    """(B, L, D) clip features -> (B, L) saliency logits."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = MLP(dim, dim, 1, num_layers=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)
