"""Inference API: a trained checkpoint, video features and queries in; ranked windows and saliency out.

Example::

    g = Grounder.from_pretrained("runs/fixture/best")
    [res] = g.predict(video_features, query_text="a red circle moves left")   # (L, Dv) features
    res.windows[0]      # [start_s, end_s, score], best first
    res.saliency        # (L,) per-clip saliency

Videos of any length. A video with more clips than the model was trained on (``max_clips``) is
covered by overlapping windows of ``max_clips`` clips (stride ``window_stride``, half a window by
default, the last window flush with the end). Each window is predicted as a video of its own; its
spans are shifted to video time, every window's candidates are pooled and merged by score-aware
temporal NMS (``merge_nms_iou``), and the per-clip saliency is the mean over the windows covering
the clip. A window sees a moment near its edge only in part, with no less confidence, so before the
merge a candidate whose centre lies outside its window's core (the middle ``stride`` clips; the
first and last windows' cores reach the video ends) has its score multiplied by ``off_core_weight``:
the window that sees a moment whole wins. With the default half-window stride, a moment up to half
the trained length lies whole inside the window whose core holds its centre.

Foreground scores are learned within one video at a time: a window without the moment still yields
confident spans, so they do not rank candidates across windows. Saliency is trained against other
videos' queries and does; with ``saliency_rescore`` (default) a long video's candidate scores are
multiplied by the mean, over the candidate's clips, of the video's saliency min-max-normalised to
[0, 1] for that query. A video within ``max_clips`` takes one pass, post-processed exactly as at training-time
evaluation (the checkpoint's :class:`~masra.grounding.config.PostprocessConfig`, ``config.postprocess``).

``video_features`` are laid out as in the feature store: each feature type L2-normalised per clip and
concatenated in card order, *without* temporal-endpoint features (the Grounder adds them per window,
as training does). :func:`load_feature_npz` builds that from an npz file.

A video file goes through :meth:`Grounder.predict_video`: the dataset card's registered extractors
(:mod:`masra.features`) give exactly the features the store holds for it (see
:mod:`masra.grounding.infer.raw_video`).

A checkpoint on a dataset split, or on one video with text queries, is best run through
:func:`masra.grounding.infer.run.run_checkpoint`, the entry every command uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from masra.datasets.card import DatasetCard
from masra.datasets.features import temporal_endpoint_features
from masra.grounding.checkpoint import Checkpoint, read_checkpoint
from masra.grounding.config import PostprocessConfig
from masra.grounding.infer.config import GrounderConfig
from masra.grounding.infer.decode import (
    POSTPROCESS_FIELDS,
    decode_query,
    foreground_prob,
    minmax_saliency,
    postprocess_with,
    rank_candidates,
    spans_to_windows,
    temporal_nms,
    window_clips,
)
from masra.grounding.infer.inputs import default_text_encoder, load_feature_npz
from masra.grounding.infer.result import Grounding

log = logging.getLogger(__name__)

__all__ = [
    "Grounder",
    "GrounderConfig",
    "Grounding",
    "load_feature_npz",
    "window_starts",
]

_GROUNDER_FIELDS = tuple(f.name for f in fields(GrounderConfig) if f.name != "postprocess")


def window_starts(num_clips: int, max_clips: int, stride: int) -> list[int]:
    """Start clips of the windows covering ``num_clips`` clips; the last window ends at the video end.

    Example:
        >>> window_starts(10, 4, 2)
        [0, 2, 4, 6]
        >>> window_starts(3, 4, 2)
        [0]
    """
    if num_clips <= max_clips:
        return [0]
    starts = list(range(0, num_clips - max_clips + 1, stride))
    if starts[-1] != num_clips - max_clips:
        starts.append(num_clips - max_clips)
    return starts


class Grounder:
    """A grounding model ready for inference (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        config: GrounderConfig,
        *,
        text_encoder: Any = None,
        text_encoder_name: str | None = None,
        device: str | torch.device = "cpu",
        card: DatasetCard | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        """``model`` follows the MasraModel forward contract; ``text_encoder`` has ``encode_tokens``;
        ``card`` (the dataset card the model was trained on) names the extractors of raw videos;
        ``checkpoint``: what the model was read from (:meth:`from_checkpoint` sets it)."""
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self._text_encoder = text_encoder
        self.text_encoder_name = text_encoder_name
        self.card = card
        self.checkpoint = checkpoint
        self._extractors: dict[str, Any] | None = None  # loaded by predict_video on first use

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
        *,
        device: str | torch.device = "cpu",
        text_encoder: Any = None,
        postprocess: PostprocessConfig | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Grounder:
        """The Grounder of a read checkpoint (:func:`~masra.grounding.checkpoint.read_checkpoint`),
        on the checkpoint's card.

        Args:
            checkpoint: the read checkpoint; its weights are loaded here.
            device: torch device.
            text_encoder: a loaded ``TextEncoder`` or a model name for raw-text queries; default: the
                one that made the dataset's query features (loaded on first use).
            postprocess: a :class:`PostprocessConfig`, or a mapping of its fields to change in the
                checkpoint's (e.g. ``{"proposals": False}``); default: the checkpoint's.
            overrides: other :class:`GrounderConfig` fields (``max_clips``, ``window_stride``, ...).
                Post-processing fields given here (``top_k=3``) still work but are deprecated.
        """
        card = checkpoint.card
        config = GrounderConfig.for_checkpoint(checkpoint, card)
        pp = config.postprocess
        if isinstance(postprocess, PostprocessConfig):
            pp = postprocess
        elif postprocess is not None:
            pp = replace(pp, **postprocess)
        loose = {k: overrides.pop(k) for k in list(overrides) if k in POSTPROCESS_FIELDS}
        pp = postprocess_with(pp, loose, "Grounder.from_pretrained")
        unknown = sorted(set(overrides) - set(_GROUNDER_FIELDS))
        if unknown:
            raise TypeError(f"unknown Grounder settings {unknown}; known: {sorted(_GROUNDER_FIELDS)}")
        config = replace(config, postprocess=pp, **overrides)
        name = text_encoder if isinstance(text_encoder, str) else None
        if text_encoder is None:
            try:
                name = default_text_encoder(card)
            except ValueError as e:  # only an error once raw text is given
                log.info("%s", e)
        if name is not None:
            text_encoder = None
        model = checkpoint.build_model(device)
        log.info(
            "loaded %s (%s, max %d clips of %.1f s)",
            checkpoint.folder, card.name, config.max_clips, config.clip_len,
        )  # fmt: skip
        return cls(
            model,
            config,
            text_encoder=text_encoder,
            text_encoder_name=name,
            device=device,
            card=card,
            checkpoint=checkpoint,
        )

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        text_encoder: Any = None,
        card: DatasetCard | None = None,
        postprocess: PostprocessConfig | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Grounder:
        """Load a checkpoint folder (``config.json`` + ``model.safetensors``, or a run folder).

        Args:
            checkpoint: the folder, e.g. ``runs/fixture/best`` (or ``runs/fixture``: its best).
            card: the dataset card; default: the checkpoint's dataset with its training overrides.
            device, text_encoder, postprocess, overrides: as in :meth:`from_checkpoint`.
        """
        ckpt = read_checkpoint(checkpoint, card=card)
        return cls.from_checkpoint(
            ckpt, device=device, text_encoder=text_encoder, postprocess=postprocess, **overrides
        )

    # ---- inputs -------------------------------------------------------------------------------
    def encode_text(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token features (T_i, Dt) of each text with the Grounder's text encoder."""
        if self._text_encoder is None:
            if self.text_encoder_name is None:
                raise ValueError("this Grounder has no text encoder; pass query_features instead of text")
            from masra.text_encoder import TextEncoder

            self._text_encoder = TextEncoder.load(self.text_encoder_name, device=str(self.device))
        feats = [tokens for tokens, _ in self._text_encoder.encode_tokens(list(texts))]
        if feats and feats[0].shape[1] != self.config.text_dim:
            raise ValueError(
                f"text encoder gives {feats[0].shape[1]}-d tokens; the model takes {self.config.text_dim}-d"
            )
        return feats

    def _video(self, video_features: Any) -> torch.Tensor:
        video = torch.as_tensor(np.asarray(video_features, dtype=np.float32))
        cfg = self.config
        if video.ndim != 2 or video.shape[0] == 0:
            raise ValueError(f"video_features must be (L > 0, {cfg.video_dim}), got {tuple(video.shape)}")
        if video.shape[1] != cfg.video_dim:
            hint = " (temporal-endpoint dims are added by the Grounder; leave them out)" if (
                cfg.temporal_endpoint and video.shape[1] == cfg.video_dim + 2
            ) else ""  # fmt: skip
            raise ValueError(
                f"video_features have {video.shape[1]} dims, the model takes {cfg.video_dim}{hint}"
            )
        return video

    def _texts(
        self, query_features: Any, query_text: str | Sequence[str] | None
    ) -> tuple[list[torch.Tensor], list[str | None]]:
        if (query_features is None) == (query_text is None):
            raise ValueError("give exactly one of query_features and query_text")
        if query_text is not None:
            texts = [query_text] if isinstance(query_text, str) else list(query_text)
            feats: list[Any] = self.encode_text(texts)
            names: list[str | None] = list(texts)
        else:
            single = isinstance(query_features, np.ndarray | torch.Tensor) and query_features.ndim == 2
            feats = [query_features] if single else list(query_features)
            names = [None] * len(feats)
        out = []
        for i, f in enumerate(feats):
            t = torch.as_tensor(np.asarray(f, dtype=np.float32))
            if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] != self.config.text_dim:
                raise ValueError(
                    f"query {i}: features must be (T > 0, {self.config.text_dim}), got {tuple(t.shape)}"
                )
            out.append(t[: self.config.max_text_len])
        if not out:
            raise ValueError("no queries given")
        return out, names

    # ---- prediction ---------------------------------------------------------------------------
    def _core(self, start: int, starts: list[int], span: int) -> tuple[float, float]:
        """Seconds ``[lo, hi]`` of the core of the window starting at clip ``start``."""
        margin = (span - self.config.stride) / 2
        lo = -np.inf if start == starts[0] else (start + margin) * self.config.clip_len
        hi = np.inf if start == starts[-1] else (start + span - margin) * self.config.clip_len
        return float(lo), float(hi)

    def predict(
        self,
        video_features: Any,
        query_features: Any = None,
        query_text: str | Sequence[str] | None = None,
        *,
        duration: float | None = None,
        top_k: int | None = None,
    ) -> list[Grounding]:
        """Ground each query in one video.

        Args:
            video_features: (L, Dv) array or tensor (see the module docstring for the layout).
            query_features: one (T, Dt) array or a list of them; or
            query_text: one string or a list of strings (encoded with the text encoder).
            duration: video duration in seconds (default ``L * clip_len``); windows are clamped to it.
            top_k: windows per query (default: the config's).
        Returns:
            One :class:`Grounding` per query, in input order.
        """
        texts, names = self._texts(query_features, query_text)
        [results] = self.predict_many([video_features], [texts], durations=[duration], top_k=top_k)
        for res, name in zip(results, names, strict=True):
            res.query = name
        return results

    def predict_video(
        self,
        path: str | os.PathLike[str],
        query_features: Any = None,
        query_text: str | Sequence[str] | None = None,
        *,
        duration: float | None = None,
        top_k: int | None = None,
    ) -> list[Grounding]:
        """Ground each query in a video file (any length), its features extracted as the card says.

        The card's registered extractors (loaded once, then kept) give the features the store would
        hold for this video, so the result equals :meth:`predict` on the stored features. Each
        result's ``extra`` holds ``duration`` (s; ``duration``, default the container's) and
        ``num_clips``. Raises :class:`~masra.video_io.VideoIOError` (one line naming the file) for an
        unreadable video.
        """
        from masra.grounding.infer.raw_video import predict_video

        return predict_video(self, path, query_features, query_text, duration=duration, top_k=top_k)

    @torch.no_grad()
    def predict_many(
        self,
        videos: Sequence[Any],
        queries: Sequence[Sequence[Any]],
        *,
        durations: Sequence[float | None] | None = None,
        top_k: int | None = None,
    ) -> list[list[Grounding]]:
        """Ground the queries of many videos, batching (video window, query) pairs across videos.

        Args:
            videos: V arrays (L_v, Dv).
            queries: per video, a list of (T, Dt) query token features.
            durations: per video, seconds or None (``L_v * clip_len``).
            top_k: windows per query (default: the config's).
        Returns:
            Per video, one :class:`Grounding` per query, in input order.
        """
        cfg = self.config
        if len(videos) != len(queries):
            raise ValueError(f"{len(videos)} videos but {len(queries)} query lists")
        durations = list(durations) if durations is not None else [None] * len(videos)
        pp = cfg.postprocess if top_k is None else replace(cfg.postprocess, top_k=top_k)
        plans = []  # per video: (num_clips, duration, starts, span, windows (W, span, Dv'), texts)
        pairs = []  # (video, query, window)
        for v, (feats, qs) in enumerate(zip(videos, queries, strict=True)):
            video = self._video(feats)  # (L, Dv)
            texts, _ = self._texts(list(qs), None)
            n = video.shape[0]
            starts = window_starts(n, cfg.max_clips, cfg.stride)
            span = min(n, cfg.max_clips)
            windows = torch.stack([video[s : s + span] for s in starts])  # (W, span, Dv)
            if cfg.temporal_endpoint:
                tef = torch.from_numpy(temporal_endpoint_features(span))[None].expand(len(starts), -1, -1)
                windows = torch.cat([windows, tef], dim=-1)  # (W, span, Dv + 2)
            duration = durations[v]
            plans.append(
                (
                    n,
                    float(duration) if duration is not None else n * cfg.clip_len,
                    starts,
                    span,
                    windows,
                    texts,
                )
            )
            pairs += [(v, q, w) for q in range(len(texts)) for w in range(len(starts))]
        outputs = self._forward_pairs(plans, pairs)
        results = []
        for v, (n, duration, starts, span, _, texts) in enumerate(plans):
            per_query = []
            for q in range(len(texts)):
                per_query.append(
                    self._merge(
                        n, duration, starts, span, [outputs[(v, q, w)] for w in range(len(starts))], pp
                    )
                )
            results.append(per_query)
        return results

    def _forward_pairs(
        self, plans: list[Any], pairs: list[tuple[int, int, int]]
    ) -> dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Model outputs per (video, query, window): prob (Q,), spans (Q, 2), saliency (span,)."""
        cfg = self.config
        order = sorted(range(len(pairs)), key=lambda i: -plans[pairs[i][0]][3])  # longest windows first
        out: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for b in range(0, len(order), cfg.batch_size):
            chunk = [pairs[i] for i in order[b : b + cfg.batch_size]]
            l_max = max(plans[v][3] for v, _, _ in chunk)
            t_max = max(plans[v][5][q].shape[0] for v, q, _ in chunk)
            width = plans[chunk[0][0]][4].shape[-1]
            vid = torch.zeros(len(chunk), l_max, width)
            vmask = torch.zeros(len(chunk), l_max, dtype=torch.bool)
            text = torch.zeros(len(chunk), t_max, cfg.text_dim)
            tmask = torch.zeros(len(chunk), t_max, dtype=torch.bool)
            for i, (v, q, w) in enumerate(chunk):
                span, windows, texts = plans[v][3], plans[v][4], plans[v][5]
                vid[i, :span], vmask[i, :span] = windows[w], True
                text[i, : texts[q].shape[0]], tmask[i, : texts[q].shape[0]] = texts[q], True
            res = self.model(
                vid.to(self.device), vmask.to(self.device), text.to(self.device), tmask.to(self.device)
            )
            prob = foreground_prob(res["pred_logits"]).float().cpu()  # (B, Q)
            spans = res["pred_spans"].float().cpu()  # (B, Q, 2)
            sal = res["saliency"].float().cpu()  # (B, l_max)
            for i, key in enumerate(chunk):
                out[key] = (prob[i], spans[i], sal[i, : plans[key[0]][3]])
        return out

    def _merge(
        self,
        num_clips: int,
        duration: float,
        starts: list[int],
        span: int,
        outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        pp: PostprocessConfig,
    ) -> Grounding:
        """One query's windows and saliency from its per-window outputs (module docstring).

        A video of one window is decoded by :func:`~masra.grounding.infer.decode.decode_query`, the
        trainer's own decoding; a long video's windows are merged first, then ranked alike.
        """
        cfg = self.config
        saliency = np.zeros(num_clips)
        counts = np.zeros(num_clips)
        for (_, _, sal), s in zip(outputs, starts, strict=True):
            saliency[s : s + span] += sal.numpy()
            counts[s : s + span] += 1
        saliency = saliency / counts
        rounded = [round(float(v), 5) for v in saliency]  # as written to a prediction row
        if len(starts) == 1:
            prob, spans, _ = outputs[0]
            windows = decode_query(
                prob,
                spans,
                rounded,
                num_clips=span,
                clip_len=cfg.clip_len,
                duration=max(duration, 1e-6),
                postprocess=pp,
            )
            return Grounding(windows=windows, saliency=saliency, num_windows=1)
        candidates: list[list[float]] = []
        for (prob, spans, _), s in zip(outputs, starts, strict=True):
            offset = s * cfg.clip_len
            local = spans_to_windows(
                spans,
                prob,
                num_clips=span,
                clip_len=cfg.clip_len,
                duration=max(duration - offset, 1e-6),
                top_k=prob.shape[0],
                snap=pp.snap,
            )
            lo, hi = self._core(s, starts, span)
            for a, e, c in local:
                a, e = round(a + offset, 4), round(e + offset, 4)
                weight = 1.0 if lo <= (a + e) / 2 <= hi else cfg.off_core_weight
                candidates.append([a, e, c * weight])
        if pp.proposals:  # the windows' candidates merged by merge_nms_iou, not the pass's nms_iou
            merge = replace(pp, nms_iou=cfg.merge_nms_iou)
            windows = rank_candidates(
                candidates, rounded, clip_len=cfg.clip_len, duration=duration, postprocess=merge
            )
        else:
            if cfg.saliency_rescore:
                candidates = self._saliency_rescore(candidates, saliency)
            candidates = [[a, e, round(c, 6)] for a, e, c in candidates]
            windows = temporal_nms(candidates, cfg.merge_nms_iou)[: pp.top_k]
        return Grounding(windows=windows, saliency=saliency, num_windows=len(starts))

    def _saliency_rescore(self, candidates: list[list[float]], saliency: np.ndarray) -> list[list[float]]:
        """Scores x the mean min-max-normalised video saliency over each candidate's clips."""
        norm = minmax_saliency(saliency)
        out = []
        for a, e, c in candidates:
            i0, i1 = window_clips(a, e, self.config.clip_len, len(norm))
            out.append([a, e, c * float(norm[i0:i1].mean())])
        return out
