"""Pictures of results: per-query timelines (PNG) and a Markdown run report. matplotlib (Agg) only."""

from masra.viz.report import write_run_report
from masra.viz.timeline import TimelineData, render_timeline, timelines_from_predictions

__all__ = ["TimelineData", "render_timeline", "timelines_from_predictions", "write_run_report"]
