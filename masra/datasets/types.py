"""Plain records shared by both stages: one grounding query and its labels.

Times are in seconds. A window is ``(start, end)`` with ``start < end``. Clip ``i`` of a video with
clip length ``c`` covers ``[i * c, (i + 1) * c)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

QueryId = int | str


@dataclass(frozen=True)
class Query:
    """One (video, sentence) pair as the annotation files give it.

    Attributes:
        qid: query id (int for QVHighlights and Charades-STA, str for TACoS).
        query: the sentence.
        vid: video id; features live at ``{dir}/{vid}.npz``.
        duration: video duration in seconds.
        windows: ground-truth moments in seconds; empty on unlabelled splits.
        relevant_clip_ids: QVHighlights clip ids with saliency labels, else None.
        saliency_scores: for each id in ``relevant_clip_ids``, the 3 annotators' 0-4 scores, else None.
    """

    qid: QueryId
    query: str
    vid: str
    duration: float
    windows: tuple[tuple[float, float], ...] = ()
    relevant_clip_ids: tuple[int, ...] | None = None
    saliency_scores: tuple[tuple[int, ...], ...] | None = None

    @property
    def labelled(self) -> bool:
        return len(self.windows) > 0


@dataclass
class ReadReport:
    """What a reader changed while reading, so nothing is dropped or clipped silently.

    ``dropped`` and ``clipped`` map a reason to a count; ``examples`` keeps a few line references per
    reason for the message shown to the user.
    """

    path: str
    lines: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, reason: str, where: str) -> None:
        table = self.dropped if kind == "dropped" else self.clipped
        table[reason] = table.get(reason, 0) + 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append(where)

    def summary(self) -> str:
        parts = [
            f"{n} {kind} ({reason})"
            for kind, table in (("dropped", self.dropped), ("clipped", self.clipped))
            for reason, n in table.items()
        ]
        return f"{self.path}: {self.lines} lines" + (": " + ", ".join(parts) if parts else "")


class AnnotationError(ValueError):
    """A malformed annotation line: the message names the file, the line number and the problem."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class MissingFilesError(FileNotFoundError):
    """Feature files missing for some ids; the message lists the first few ids and the count."""

    def __init__(self, what: str, directory: str, ids: list[str], show: int = 5) -> None:
        head = ", ".join(ids[:show])
        more = f" (and {len(ids) - show} more)" if len(ids) > show else ""
        super().__init__(f"{len(ids)} {what} missing under {directory}: {head}{more}")
        self.ids = ids
