"""What each training step trains on: its query rows, its prior-only videos, the priors a scoped
decay drops, and the loss weights of the step.

Every draw has its own generator, seeded from (seed, epoch or step, process) only, so a resumed run
draws what an uninterrupted one would, and the labelled order is that of a run without
pseudo-queries or prior-only videos (:mod:`masra.grounding.data.order`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from masra.grounding.config import TrainConfig
from masra.grounding.data.batch import Batch
from masra.grounding.data.order import pseudo_per_process, pseudo_step_rows
from masra.grounding.data.resident import ResidentSplit, epoch_batches
from masra.grounding.train.step import prior_weight_scale

__all__ = ["StepRows"]


class StepRows:
    """The rows of ``train_data`` each step trains on, and the loss weights that go with them.

    Args:
        cfg: the training config (``seed``, ``batch_size``, ``prior_video_ratio``, ``pseudo_queries``).
        train_data: the resident training split.
        criterion: its ``prior_names`` (the prior losses) and ``cfg`` (``prior_decay_steps``,
            ``prior_decay_scope``) are read.
        weights: the criterion's loss weights by name (returned as is on steps they are not scaled).
        rank / world: this process's index and the number of processes.
        train_rows: (N',) int64 labelled query rows of ``train_data``, or None: every query.
        pseudo_rows: (P,) int64 pseudo-query rows of ``train_data``, or None.

    Attributes:
        num_labelled: how many labelled queries an epoch passes over (0: an epoch is a pass over
            the pseudo-queries).
        pseudo_per_step: pseudo-queries each process adds to each step (0: none).
        prior_videos: prior-only videos each process adds to each step (0: none).
        decay_steps: ``loss.prior_decay_steps`` (0: no decay).
        decayed_videos: (V,) bool, the videos whose priors decay when ``loss.prior_decay_scope`` is
            "labelled" (those with a labelled query); None when the decay scales the weights instead.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        train_data: ResidentSplit,
        *,
        criterion: nn.Module,
        weights: dict[str, float],
        rank: int,
        world: int,
        train_rows: Tensor | None = None,
        pseudo_rows: Tensor | None = None,
    ) -> None:
        self.cfg = cfg
        self.train_data = train_data
        self.criterion = criterion
        self.weights = weights
        self.rank = rank
        self.world = world
        self.train_rows = None if train_rows is None else torch.as_tensor(train_rows, dtype=torch.long).cpu()
        self.num_labelled = len(train_data) if self.train_rows is None else len(self.train_rows)
        self.pseudo_rows = (
            None if pseudo_rows is None else torch.as_tensor(pseudo_rows, dtype=torch.long).cpu()
        )
        self.pseudo_per_step = (  # per process
            pseudo_per_process(cfg.pseudo_queries.weight, cfg.batch_size, world)
            if self.pseudo_rows is not None and len(self.pseudo_rows)
            else 0
        )
        if not self.num_labelled and not self.pseudo_per_step:
            raise ValueError("nothing to train on: no labelled query and no pseudo-query")
        # The criterion's prior losses (those of the parts that are on); prior-only videos feed only them.
        prior_weight = any(weights.get(n, 0.0) > 0 for n in getattr(criterion, "prior_names", []))
        per_process = cfg.batch_size // world
        self.prior_videos = (
            min(train_data.num_videos, max(1, round(cfg.prior_video_ratio * per_process)))
            if cfg.prior_video_ratio > 0 and train_data.has_priors and prior_weight
            else 0
        )
        # loss.prior_decay_scope "labelled": the videos whose priors decay (those with a labelled query).
        loss_cfg = getattr(criterion, "cfg", None)
        self.decay_steps = int(getattr(loss_cfg, "prior_decay_steps", 0) or 0)
        self.decayed_videos: Tensor | None = None
        self.row_videos: Tensor | None = None  # q2v on the host, for the per-step drop
        if self.decay_steps and getattr(loss_cfg, "prior_decay_scope", "all") == "labelled":
            labelled = torch.arange(train_data.num_labelled) if self.train_rows is None else self.train_rows
            self.row_videos = train_data.q2v.cpu()
            self.decayed_videos = torch.zeros(train_data.num_videos, dtype=torch.bool)
            self.decayed_videos[self.row_videos[labelled]] = True

    def epoch_batches(self, epoch: int) -> list[Tensor]:
        """This process's index batches of ``epoch``: over the labelled queries, or over the
        pseudo-queries when there is none."""
        if self.num_labelled:
            items, batch = self.num_labelled, self.cfg.batch_size
        else:
            assert self.pseudo_rows is not None
            items, batch = len(self.pseudo_rows), self.pseudo_per_step * self.world
        return epoch_batches(items, batch, seed=self.cfg.seed, epoch=epoch, rank=self.rank, world=self.world)

    def batch(self, idx: Tensor, step: int) -> tuple[Batch, dict[str, float]]:
        """The batch of step ``step`` (0-based) for the index batch ``idx`` of :meth:`epoch_batches`,
        with its prior-only videos and without the priors the decay drops; and the step's loss
        weights (:meth:`loss_weights`)."""
        rows = self.query_rows(idx, step)
        weights, scale = self.loss_weights(step)
        batch = self.train_data.batch(rows, with_priors=scale > 0)  # decayed to 0: no prior work
        extra_rows = None
        if self.prior_videos and scale > 0:
            extra_rows = self.prior_video_rows(step)
            batch.prior_videos = self.train_data.video_batch(extra_rows)
        if self.decayed_videos is not None:
            self.drop_decayed_priors(batch, rows, extra_rows, step)
        return batch, weights

    def query_rows(self, idx: Tensor, step: int) -> Tensor:
        """The ``train_data`` rows of step ``step``: the labelled batch ``idx`` and the step's
        pseudo-queries, or the pseudo-query batch ``idx`` when there is no labelled query."""
        if not self.num_labelled:
            assert self.pseudo_rows is not None
            return self.pseudo_rows[idx]
        rows = idx if self.train_rows is None else self.train_rows[idx]
        if self.pseudo_per_step:
            assert self.pseudo_rows is not None
            pick = pseudo_step_rows(
                len(self.pseudo_rows),
                self.pseudo_per_step,
                seed=self.cfg.seed,
                step=step,
                rank=self.rank,
                world=self.world,
            )
            rows = torch.cat([rows, self.pseudo_rows[pick]])
        return rows

    def prior_video_rows(self, step: int) -> Tensor:
        """The prior-only video rows of step ``step``: a function of (seed, step, process) only, so
        resume draws the same ones."""
        gen = torch.Generator().manual_seed((int(self.cfg.seed) * 1_000_003 + step) * 64 + self.rank)
        return torch.randperm(self.train_data.num_videos, generator=gen)[: self.prior_videos]

    def drop_decayed_priors(self, batch: Batch, rows: Tensor, extra_rows: Tensor | None, step: int) -> None:
        """``loss.prior_decay_scope`` "labelled": each video with a labelled query leaves the prior
        losses of step ``step`` with probability one minus the decay's half-cosine (a function of
        seed, step and process, so a resumed run drops the same ones); the other videos keep their
        priors. ``batch`` holds the query ``rows`` and, if any, the step's prior-only videos
        ``extra_rows`` (:meth:`prior_video_rows`)."""
        assert self.decayed_videos is not None and self.row_videos is not None
        keep_p = prior_weight_scale(step, self.decay_steps)
        if keep_p >= 1.0:
            return
        gen = torch.Generator().manual_seed((int(self.cfg.seed) * 1_000_003 + step) * 64 + 32 + self.rank)
        videos = self.row_videos[rows]
        if batch.priors is not None:
            drop = self.decayed_videos[videos] & (torch.rand(len(videos), generator=gen) >= keep_p)
            batch.priors = batch.priors.without_rows(drop.to(batch.priors.has_prior.device))
        extra = batch.prior_videos
        if extra is not None and extra_rows is not None:
            drop = self.decayed_videos[extra_rows] & (torch.rand(self.prior_videos, generator=gen) >= keep_p)
            extra.priors = extra.priors.without_rows(drop.to(extra.priors.has_prior.device))

    def loss_weights(self, step: int) -> tuple[dict[str, float], float]:
        """The loss weights of step ``step``: the prior losses' scaled by ``loss.prior_decay_steps``
        (:func:`~masra.grounding.train.step.prior_weight_scale`), and that scale (1 when the decay is
        scoped to the labelled videos: :meth:`drop_decayed_priors` applies it)."""
        scale = prior_weight_scale(step, self.decay_steps)
        if scale == 1.0 or self.decayed_videos is not None:
            return self.weights, 1.0
        prior = set(getattr(self.criterion, "prior_names", []))
        return {k: v * scale if k in prior else v for k, v in self.weights.items()}, scale
