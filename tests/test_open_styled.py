"""The open world's style-gap variant (masra/fixture/open_styled.py): caption-style texts that differ
from the human queries in wording and keep their content, the same spans as ``reference``, and the
prior run built deterministically (written, imported, embedded, encoded; skipped when up to date).

Sentences from the committed sample; a fake text encoder (nothing here loads MiniLM)."""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from masra.fixture import open_styled
from masra.fixture.open_priors import prior_rows, reword
from masra.fixture.open_styled import (
    DROP,
    NO_VERB_TEMPLATES,
    PRONOUNS,
    SYNONYMS,
    TEMPLATES,
    VERB_FORMS,
    build_styled_priors,
    caption_style,
    styled_rows,
    styled_up_to_date,
)
from masra.fixture.open_world import OpenWorldConfig, SentencePool, make_open_world
from masra.fixture.sentences import from_sample, seen_mask
from masra.grounding.data.pseudo import read_prior_events
from masra.priors.run import PriorRun

SENTENCES = from_sample().sentences
FUNCTION_WORDS = {"a", "an", "the", "is", "are", "was", "were"}


def _tokens(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def _jaccard(a: str, b: str) -> float:
    x, y = set(_tokens(a)), set(_tokens(b))
    return len(x & y) / len(x | y)


def _function_rate(texts: list[str]) -> float:
    words = [w for t in texts for w in _tokens(t)]
    return sum(w in FUNCTION_WORDS for w in words) / len(words)


def _openers() -> list[str]:
    """The fixed words each template starts with (the one that starts with the action has none)."""
    return [t.split("{")[0].strip(" ,:") for t in (*TEMPLATES, *NO_VERB_TEMPLATES) if not t.startswith("{")]


def test_styled_texts_differ_from_the_queries_in_style() -> None:
    styled = [caption_style(s) for s in SENTENCES]
    assert styled == [caption_style(s) for s in SENTENCES]  # a function of the text only
    cfg = OpenWorldConfig()
    rng = np.random.default_rng(0)
    reworded = [reword(s, rng, cfg) for s in SENTENCES]  # the reference priors' rewording
    # Token overlap with the query sentence: high for the reference rewording, low for the styled text.
    assert statistics.fmean(_jaccard(s, r) for s, r in zip(SENTENCES, reworded, strict=True)) > 0.75
    assert statistics.fmean(_jaccard(s, t) for s, t in zip(SENTENCES, styled, strict=True)) < 0.5
    assert not {t.lower().rstrip(".") for t in SENTENCES} & set(styled)
    # Function words: about a fifth of the queries' words, none of the captions'.
    assert _function_rate(list(SENTENCES)) > 0.1 and _function_rate(styled) == 0.0
    # Templates: openers no query starts with; every text in one of them, several used.
    openers = _openers()
    assert not [s for s in SENTENCES if s.lower().startswith(tuple(openers))]
    in_template = [t for t in styled if t.startswith(tuple(openers)) or t.endswith(" in frame")]
    assert len(in_template) == len(styled)
    assert len({o for o in openers for t in styled if t.startswith(o)}) >= 5
    first_two = {" ".join(_tokens(s)[:2]) for s in SENTENCES}
    assert sum(" ".join(_tokens(t)[:2]) in first_two for t in styled) <= 0.02 * len(styled)
    # Content kept: the query's content words (not function words, pronouns, synonyms or verbs) are there.
    skip = DROP | set(PRONOUNS) | set(SYNONYMS) | set(VERB_FORMS) | {"her"}
    kept = [
        w in _tokens(t) for s, t in zip(SENTENCES, styled, strict=True) for w in _tokens(s) if w not in skip
    ]
    assert sum(kept) / len(kept) > 0.95


def _reference_rows() -> list[dict[str, Any]]:
    """The reference priors of a small open world (random sentence embeddings: no encoder)."""
    cfg = OpenWorldConfig(seed=3, train_videos=6, val_videos=2, test_videos=2)
    emb = np.random.default_rng(0).normal(size=(len(SENTENCES), 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pool = SentencePool.build(SENTENCES, emb, seen_mask(SENTENCES, cfg.seen_share))
    return prior_rows(make_open_world(cfg, pool), pool, cfg)["reference"]


def test_styled_rows_keep_every_span_and_caption_slot() -> None:
    ref = _reference_rows()
    styled = styled_rows(ref)
    assert [r["vid"] for r in styled] == [r["vid"] for r in ref]
    for a, b in zip(ref, styled, strict=True):
        assert a["duration"] == b["duration"] and len(a["clip_captions"]) == len(b["clip_captions"])
        assert [(e["start"], e["end"]) for e in a["events"]] == [(e["start"], e["end"]) for e in b["events"]]
        assert [caption_style(e["text"]) for e in a["events"]] == [e["text"] for e in b["events"]]
        assert all(x["text"] != y["text"] for x, y in zip(a["events"], b["events"], strict=True))
    # The same text is the same caption everywhere (events and clip captions alike).
    pairs = {(e["text"], f["text"]) for a, b in zip(ref, styled, strict=True) for e, f in zip(a["events"], b["events"], strict=True)}  # fmt: skip
    assert len({t for t, _ in pairs}) == len(pairs)


class FakeEncoder:
    """A text encoder of the shape the prior embedding and the pseudo-query cache need."""

    name, dim = "fake", 8

    def _vec(self, text: str) -> np.ndarray:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode_tokens(self, texts: list[str], batch_size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.stack([self._vec(w) for w in t.split()]), self._vec(t)) for t in texts]


def test_build_writes_imports_embeds_and_encodes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = tmp_path / "ow"
    (world / "priors_import").mkdir(parents=True)
    ref = _reference_rows()
    src = world / "priors_import" / "reference.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ref), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="make openworld"):
        build_styled_priors(world, encoder=FakeEncoder())  # type: ignore[arg-type]
    marker = {"dataset": "openworld", "status": "complete", "config": {"clip_len": 2.0}, "encoder": "fake"}
    (world / "fixture.json").write_text(json.dumps(marker), encoding="utf-8")
    assert not styled_up_to_date(world, encoder="fake")
    run_dir = build_styled_priors(world, encoder=FakeEncoder())  # type: ignore[arg-type]
    run = PriorRun.at(run_dir)
    assert run_dir == world / "priors" / "styled" and styled_up_to_date(world, encoder="fake")
    events = read_prior_events(run_dir)
    for r in ref:  # the spans of reference, the texts in caption style
        got = events[r["vid"]].events
        spans = [x for s, e, _ in got for x in (s, e)]  # stored as float32
        assert spans == pytest.approx([x for e in r["events"] for x in (e["start"], e["end"])], abs=1e-5)
        assert [t for _, _, t in got] == [caption_style(e["text"]) for e in r["events"]]
    assert list(run.embeddings_dir("fake").glob("*.parquet"))
    index = json.loads((run.pseudo_queries_dir("fake") / "index.json").read_text())
    assert set(index["texts"]) == {t for v in events.values() for _, _, t in v.events}
    stamp = json.loads((world / "priors_import" / "styled.json").read_text())
    assert stamp["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    first = (world / "priors_import" / "styled.jsonl").read_bytes()
    # Up to date: nothing is rewritten.
    shard = run.shards()[0]
    mtime = shard.stat().st_mtime_ns
    build_styled_priors(world, encoder=FakeEncoder())  # type: ignore[arg-type]
    assert shard.stat().st_mtime_ns == mtime
    # A changed rewrite rule, or a changed reference file, is restyled; the same one gives the same bytes.
    with monkeypatch.context() as m:
        m.setattr(open_styled, "TEMPLATES", open_styled.TEMPLATES[::-1])
        assert not styled_up_to_date(world, encoder="fake")
    assert styled_up_to_date(world, encoder="fake")
    # A changed reference file is restyled; the same one gives the same bytes.
    src.write_text("".join(json.dumps(r) + "\n" for r in ref[:3]), encoding="utf-8")
    assert not styled_up_to_date(world, encoder="fake")
    build_styled_priors(world, encoder=FakeEncoder())  # type: ignore[arg-type]
    assert len(read_prior_events(run_dir)) == 3
    src.write_text("".join(json.dumps(r) + "\n" for r in ref), encoding="utf-8")
    build_styled_priors(world, encoder=FakeEncoder())  # type: ignore[arg-type]
    assert (world / "priors_import" / "styled.jsonl").read_bytes() == first
