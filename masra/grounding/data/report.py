"""What building a resident split cut or dropped (:class:`SplitReport`), so nothing changes silently."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

__all__ = ["SplitReport"]


@dataclass
class SplitReport:
    """What building a split cut or dropped, so nothing changes silently."""

    queries: int = 0
    videos: int = 0
    videos_cut: int = 0
    windows_dropped: int = 0
    windows_clipped: int = 0
    queries_without_windows: int = 0
    texts_cut: int = 0
    events_dropped: int = 0
    videos_without_priors: int = 0
    missing_prior_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ", ".join(
            f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name != "missing_prior_ids"
        )
