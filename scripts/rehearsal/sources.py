"""Where a rehearsal's annotations come from, the videos they name, and ``--limit-videos`` subsets.

The annotations are always read through the dataset's shipped card (``find_card`` / ``load_card``)
with ``root`` pointing at the folder that holds them: ``--annotations-root``, else
``../shared/datasets/<dataset>`` (the real files), else the committed sample
``tests/data/rehearsal/<dataset>`` (a few dozen real lines per file, see its README).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from masra.datasets.card import DatasetCard, find_card, load_card
from masra.datasets.readers import load_queries
from masra.datasets.types import Query

REPO = Path(__file__).resolve().parents[2]
DATASETS = ("qvhighlights", "charades", "tacos")
SHARED = REPO.parent / "shared" / "datasets"
SAMPLE = REPO / "tests" / "data" / "rehearsal"


def stable_hash(text: str) -> int:
    """A hash of ``text`` that is the same in every process (Python's ``hash`` is salted)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)


@dataclass(frozen=True)
class Video:
    """One video of the annotations: its id, duration (s) and the splits that name it."""

    vid: str
    duration: float
    splits: tuple[str, ...]


@dataclass
class Source:
    """The annotations of one dataset, read through its shipped card.

    Attributes:
        dataset: the shipped card's name; card: that card with ``root`` set to the annotations' folder.
        kind: ``real`` (../shared/datasets), ``sample`` (the committed sample), ``given``
            (``--annotations-root``) or ``limited`` (a ``--limit-videos`` subset of one of those).
        queries: per split, the queries its reader returned; notes: per split, the reader's report.
    """

    dataset: str
    card: DatasetCard
    kind: str
    queries: dict[str, list[Query]]
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.card.root

    def videos(self) -> dict[str, Video]:
        """Every video of every split, by id (the first duration seen wins)."""
        out: dict[str, Video] = {}
        for split, qs in self.queries.items():
            for q in qs:
                v = out.get(q.vid)
                if v is None:
                    out[q.vid] = Video(q.vid, q.duration, (split,))
                elif split not in v.splits:
                    out[q.vid] = Video(v.vid, v.duration, (*v.splits, split))
        return out

    def labelled_splits(self) -> list[str]:
        """Splits with at least one labelled query, in card order."""
        return [s for s, qs in self.queries.items() if any(q.labelled for q in qs)]


def default_root(dataset: str) -> tuple[Path, str]:
    """The real files when ``../shared/datasets/<dataset>`` exists, else the committed sample."""
    real = SHARED / dataset
    return (real, "real") if real.is_dir() else (SAMPLE / dataset, "sample")


def open_source(dataset: str, root: Path | None = None, kind: str | None = None) -> Source:
    """Read every split of ``dataset``'s shipped card with ``root`` as the card's root."""
    if dataset not in DATASETS:
        raise ValueError(f"the rehearsal knows {', '.join(DATASETS)}; got {dataset!r}")
    if root is None:
        root, kind = default_root(dataset)
    card = load_card(find_card(dataset), {"root": str(Path(root).resolve())})
    queries: dict[str, list[Query]] = {}
    notes: dict[str, str] = {}
    for split in card.annotations:
        if not card.annotation_path(split).is_file():
            continue
        queries[split], rep = load_queries(card, split)
        notes[split] = rep.summary()
    if not queries:
        raise FileNotFoundError(f"no annotation file of {dataset!r} under {root}")
    return Source(dataset, card, kind or "given", queries, notes)


def pick_videos(videos: list[Video], n: int, clip_len: float) -> list[str]:
    """``n`` video ids, awkward ones first: the longest quarter, then a quarter whose duration is not a
    whole number of clips, then the rest in hash order (deterministic, independent of file order)."""
    by_hash = sorted(videos, key=lambda v: (stable_hash(v.vid), v.vid))
    longest = sorted(videos, key=lambda v: (-v.duration, v.vid))[: max(1, n // 4)]
    fractional = [v for v in by_hash if not math.isclose(v.duration / clip_len % 1, 0, abs_tol=1e-6)]
    chosen: dict[str, None] = {}
    for group, cap in ((longest, n), (fractional[: n // 4], n), (by_hash, n)):
        for v in group:
            if len(chosen) >= cap:
                break
            chosen.setdefault(v.vid)
    return list(chosen)


def _vid_of_line(line: str, fmt: str) -> str:
    if fmt == "charades_txt":
        return line.split(maxsplit=1)[0]
    return str(json.loads(line)["vid"])


def limit_source(source: Source, per_split: int, out: Path) -> Source:
    """A copy of ``source`` with at most ``per_split`` videos per split, written under ``out``.

    Whole lines are kept (the files keep their names and format; a Charades-STA durations file keeps
    its header and the rows of the kept videos), then read again through the shipped card.
    """
    card = source.card
    out.mkdir(parents=True, exist_ok=True)
    kept: set[str] = set()
    for split, qs in source.queries.items():
        vids = {q.vid: Video(q.vid, q.duration, (split,)) for q in qs}
        keep = set(pick_videos(list(vids.values()), per_split, card.clip_len))
        kept |= keep
        path = card.annotation_path(split)
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        mine = [ln for ln in lines if _vid_of_line(ln, card.format) in keep]
        (out / path.name).write_text("\n".join(mine) + "\n", encoding="utf-8")
    if card.durations is not None:
        rows = card.durations.read_text(encoding="utf-8").splitlines()
        head = [r for r in rows[:1] if r.split("\t")[0] not in kept and not _is_number(r, 1)]
        body = [r for r in rows if r.split("\t")[0] in kept]
        (out / card.durations.name).write_text("\n".join(head + body) + "\n", encoding="utf-8")
    return open_source(source.dataset, out, "limited")


def _is_number(row: str, col: int) -> bool:
    parts = row.split("\t")
    try:
        float(parts[col])
    except (IndexError, ValueError):
        return False
    return True
