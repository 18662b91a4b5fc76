"""What building a resident split cut or dropped (:class:`SplitReport`), so nothing changes silently."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["PSEUDO_DROP_REASONS", "PseudoQueryReport", "SplitReport"]

# Why a prior event did not become a pseudo-query of its own (masra.grounding.data.pseudo), in the
# order the rules are applied; ``past_cut``: all its windows start after the video's max_clips cut.
PSEUDO_DROP_REASONS = (
    "too_short",
    "too_long",
    "generic",
    "same_text",
    "duplicate_span",
    "over_max_per_video",
    "past_cut",
)


@dataclass
class PseudoQueryReport:
    """What became of the prior events of a split's videos as pseudo-queries (``made`` = ``kept`` +
    the sum of ``dropped``).

    ``videos``: the split's videos that have priors; ``videos_without_priors``: those that have none
    (no pseudo-query); ``videos_not_in_split``: videos of the prior run outside the split (ignored);
    ``videos_without_features``: prior videos left out of a split without annotations because a
    feature file is missing (not counted again in ``videos_not_in_split``; ``*_ids``: up to 20
    examples). ``made``: events of the split's videos,
    one candidate each; ``kept``: pseudo-queries trained on; ``dropped``: per reason of
    :data:`PSEUDO_DROP_REASONS` (``same_text`` events live on as a further window of the kept
    query with their text); ``windows``: windows of the kept pseudo-queries; ``texts_cut``: kept
    texts longer than ``max_text_len`` tokens; ``generic_texts``: up to 20 texts found generic;
    ``cache``: ``hit`` or ``built`` and the folder of the encoded texts.
    """

    videos: int = 0
    videos_without_priors: int = 0
    videos_not_in_split: int = 0
    videos_without_features: int = 0
    made: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PSEUDO_DROP_REASONS, 0))
    windows: int = 0
    texts_cut: int = 0
    generic_texts: list[str] = field(default_factory=list)
    without_features_ids: list[str] = field(default_factory=list)
    cache: str = ""

    def drop(self, reason: str, n: int = 1) -> None:
        if reason not in self.dropped:
            raise KeyError(f"unknown pseudo-query drop reason {reason!r}; known: {PSEUDO_DROP_REASONS}")
        self.dropped[reason] += n

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> str:
        dropped = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"
        return (
            f"{self.kept} pseudo-queries kept of {self.made} prior events of {self.videos} videos "
            f"(dropped: {dropped})"
        )


@dataclass
class SplitReport:
    """What building a split cut or dropped, so nothing changes silently.

    ``queries``: the labelled queries kept (pseudo-queries are counted in ``pseudo``). ``videos_cut``:
    videos longer than ``max_clips`` (cut there). ``features_off_grid``: videos whose
    feature clip count is not the clip grid's for their duration (:func:`masra.datasets.grid.num_clips`;
    floor or round releases, an extra end clip), trained on the features' own clips.
    ``prior_clips_fitted``: videos whose priors were a clip or two off the (cut) features and were
    fitted to them in time. ``prior_edge_error``: the median distance of a prior event's edges from
    the labelled window it matches (IoU >= 0.5), as a share of the event's length, over
    ``prior_edge_matched`` windows (:func:`masra.grounding.data.priors.prior_edge_error`; None
    without priors or matches; measured when training starts, over the labelled queries the run
    learns from: :func:`masra.grounding.train.edges.resolve_edge_share`), from which
    ``loss.esta_edge_share: auto`` is set; ``esta_edge_share``: the share the run trained with
    (None where no run resolved it). The ``*_ids`` lists hold up to
    20 examples. ``pseudo``: the prior
    events made into queries (None, and absent from :meth:`to_dict`, without pseudo-queries).
    """

    queries: int = 0
    videos: int = 0
    videos_cut: int = 0
    windows_dropped: int = 0
    windows_clipped: int = 0
    queries_without_windows: int = 0
    texts_cut: int = 0
    events_dropped: int = 0
    videos_without_priors: int = 0
    features_off_grid: int = 0
    prior_clips_fitted: int = 0
    prior_edge_error: float | None = None
    prior_edge_matched: int = 0
    esta_edge_share: float | None = None
    missing_prior_ids: list[str] = field(default_factory=list)
    prior_fitted_ids: list[str] = field(default_factory=list)
    off_grid_ids: list[str] = field(default_factory=list)
    pseudo: PseudoQueryReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every count and example list, for the run's ``summary.json`` (``pseudo_queries``: the
        pseudo-query report, when there is one)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "pseudo"}
        if self.pseudo is not None:
            out["pseudo_queries"] = self.pseudo.to_dict()
        return out

    def summary(self) -> str:
        """One log line of the counts (fields not measured yet, still None, left out)."""
        return ", ".join(
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if not f.name.endswith("_ids") and f.name != "pseudo" and getattr(self, f.name) is not None
        )
