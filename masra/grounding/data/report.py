"""What building a resident split cut or dropped (:class:`SplitReport`), so nothing changes silently."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

__all__ = ["SplitReport"]


@dataclass
class SplitReport:
    """What building a split cut or dropped, so nothing changes silently.

    ``videos_cut``: videos longer than ``max_clips`` (cut there). ``features_off_grid``: videos whose
    feature clip count is not the clip grid's for their duration (:func:`masra.datasets.grid.num_clips`;
    floor or round releases, an extra end clip), trained on the features' own clips.
    ``prior_clips_fitted``: videos whose priors were a clip or two off the (cut) features and were
    fitted to them in time. The ``*_ids`` lists hold up to 20 examples.
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
    missing_prior_ids: list[str] = field(default_factory=list)
    prior_fitted_ids: list[str] = field(default_factory=list)
    off_grid_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, int | list[str]]:
        """Every count and example list, for the run's ``summary.json``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> str:
        return ", ".join(
            f"{f.name}={getattr(self, f.name)}" for f in fields(self) if not f.name.endswith("_ids")
        )
