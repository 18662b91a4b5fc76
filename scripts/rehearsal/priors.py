"""The synthetic priors the rehearsal imports, and the prior run both stage-1 paths fill.

Videos without a video file get priors written "elsewhere": a JSON-lines file in the format of
``masra priors import`` (docs/priors.md), in another style than the tiny MLLM's (time stamps and
capitals in the text, a camera note) and, on purpose, with caption lists of other lengths than the
clip grid (one caption per ``1.5 * clip_len`` seconds, the grid plus or minus a few, or exactly the
grid), which the importer refits to the grid and counts.

One run folder holds both: ``masra priors import`` refuses a folder that already holds shards, but
``masra priors generate`` skips every video that has a row in any shard of its folder (its resume
rule), so the rehearsal imports into the folder ``generate`` writes (its name comes from masra's own
naming rule) and then runs ``make priors``, which generates the sampled videos, embeds both shards
and reports on the whole run.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from masra.datasets.card import DatasetCard

from .sources import Video, stable_hash
from .world import prior_clips

_ACTS = ("PICKS UP", "PUTS DOWN", "LOOKS AT", "WALKS PAST", "OPENS", "HOLDS", "CUTS", "POURS")
_THINGS = ("a cup", "the door", "a phone", "some vegetables", "a towel", "the laptop", "a pan", "a book")


def generate_run_name(card: DatasetCard) -> str:
    """The folder name ``masra priors generate`` gives this card's run (model slug and prompt version)."""
    from masra.prior_gen import prompts
    from masra.prior_gen.runs import model_slug

    settings = card.extra.get("priors") or {}
    model = str(settings["model"])
    family = prompts.resolve_family(model, settings.get("prompt_family"))
    return f"{card.name}__{model_slug(model)}__{prompts.prompt_version(family)}"


def _stamp(t: float) -> str:
    return f"{int(t // 60):02d}:{t % 60:04.1f}"


def caption_count(v: Video, clip_len: float, max_clips: int) -> tuple[int, str]:
    """How many captions the synthetic row gets, and why (never the grid for most videos)."""
    grid = prior_clips(v.duration, clip_len, max_clips)
    kind = stable_hash(f"captions:{v.vid}") % 4
    if kind == 0:
        return max(1, math.ceil(v.duration / (1.5 * clip_len))), "one per 1.5 clips"
    if kind == 1:
        return max(1, grid - 1 - stable_hash(v.vid) % 3), "grid minus 1-3"
    if kind == 2:
        return grid + 1 + stable_hash(v.vid) % 4, "grid plus 1-4"
    return grid, "grid"


def prior_row(v: Video, clip_len: float, max_clips: int, seed: int) -> tuple[dict[str, object], str]:
    """One import row for ``v``: 2-6 events inside the video, captions of :func:`caption_count`."""
    rng = np.random.default_rng(stable_hash(f"{seed}:priors:{v.vid}"))
    events = []
    for _ in range(int(rng.integers(2, 7))):
        a, b = (math.floor(t * 1000) / 1000 for t in sorted(rng.uniform(0, v.duration, 2)))
        if b - a < 0.5:
            continue
        act, thing = _ACTS[rng.integers(len(_ACTS))], _THINGS[rng.integers(len(_THINGS))]
        text = f"[{_stamp(a)}-{_stamp(b)}] PERSON {act} {thing}; camera static."
        events.append({"start": a, "end": b, "text": text})
    n, why = caption_count(v, clip_len, max_clips)
    step = v.duration / n
    captions = [
        f"t={_stamp(i * step)} >> {_THINGS[rng.integers(len(_THINGS))]} in view, PERSON {_ACTS[rng.integers(len(_ACTS))]} it"
        for i in range(n)
    ]
    return {"vid": v.vid, "duration": v.duration, "events": events, "clip_captions": captions}, why


def write_import_file(videos: list[Video], path: Path, card: DatasetCard, seed: int) -> dict[str, object]:
    """The JSON-lines file of ``videos``' priors; returns what it holds (rows, caption-count kinds)."""
    kinds: Counter[str] = Counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for v in videos:
            row, why = prior_row(v, card.clip_len, card.max_clips, seed)
            kinds[why] += 1
            f.write(json.dumps(row) + "\n")
    return {"rows": len(videos), "caption_counts": dict(sorted(kinds.items()))}
