"""Prior events as training queries: the config, the filtering rules, the encoded-text cache, the
pseudo-query stream of a step, their rows in a resident split, and the store and card of a collection
without annotation files (training runs: tests/test_pseudo_train.py, the user's path from raw videos:
tests/test_unlabelled_path.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_world import TEXT_DIM, make_world

from masra.datasets.card import load_card
from masra.datasets.readers import load_queries
from masra.datasets.store import FeatureStore
from masra.datasets.store_build import build_feature_store
from masra.grounding.config import PseudoQueryConfig, TrainConfig, load_train_config
from masra.grounding.data.order import pseudo_per_process, pseudo_step_rows, steps_per_epoch
from masra.grounding.data.pseudo import (
    PriorEvents,
    load_pseudo_queries,
    normalise_text,
    read_prior_events,
    select_pseudo_queries,
)
from masra.grounding.data.pseudo_cache import encoded_event_texts, texts_digest
from masra.grounding.data.report import PSEUDO_DROP_REASONS, PseudoQueryReport
from masra.grounding.data.resident import build_split
from masra.priors.run import PriorRun
from masra.priors.schema import PRIOR_SCHEMA, SCHEMA_VERSION
from masra.priors.shards import rows_to_table, write_table_atomic

# ---- config -----------------------------------------------------------------------------------


def test_config_defaults_are_off_and_validated() -> None:
    cfg = TrainConfig()
    assert not cfg.pseudo_queries.enabled and cfg.pseudo_queries.weight == 0
    assert TrainConfig.from_dict(cfg.to_dict()).pseudo_queries == cfg.pseudo_queries
    for bad, match in [
        ({"weight": -1.0}, "weight"),
        ({"max_len_share": 0.0}, "max_len_share"),
        ({"dedup_iou": 1.5}, "dedup_iou"),
        ({"generic_share": 0.0}, "generic_share"),
        ({"generic_min_videos": 0}, "generic_min_videos"),
        ({"generic_texts": [""]}, "generic_texts"),
        ({"max_per_video": 0}, "max_per_video"),
    ]:
        with pytest.raises(ValueError, match=match):
            PseudoQueryConfig(**bad)  # type: ignore[arg-type]


def test_label_fraction_zero_needs_pseudo_queries_and_overrides_reach_them() -> None:
    with pytest.raises(ValueError, match=r"pseudo_queries\.weight > 0"):
        TrainConfig(label_fraction=0.0)
    with pytest.raises(ValueError, match=r"label_fraction must be in \[0, 1\]"):
        TrainConfig(label_fraction=-0.1)
    cfg = load_train_config(
        "fixture", None, {"label_fraction": 0, "pseudo_queries.weight": 1, "pseudo_queries.max_per_video": 4}
    )
    assert cfg.pseudo_queries.enabled and cfg.pseudo_queries.max_per_video == 4
    with pytest.raises(ValueError, match=r"--set: pseudo_queries\.min_len must be a number"):
        load_train_config("fixture", None, {"pseudo_queries.min_len": "long"})
    with pytest.raises(ValueError, match="unknown keys"):
        load_train_config("fixture", None, {"pseudo_queries.wieght": 1})


# ---- the filtering rules ----------------------------------------------------------------------


def _video(vid: str, events: list[tuple[float, float, str]], duration: float = 60.0) -> PriorEvents:
    return PriorEvents(vid, duration, tuple(events))


def _rules(**kw: object) -> PseudoQueryConfig:
    base: dict[str, object] = {"weight": 1.0, "min_len": 2.0, "max_len_share": 0.5, "dedup_iou": 0.6}
    base.update(kw)
    return PseudoQueryConfig(**base)  # type: ignore[arg-type]


def test_normalise_text() -> None:
    assert normalise_text("  A person  Opens the door.!") == "a person opens the door"
    assert normalise_text("x") == "x"


def test_each_rule_drops_what_it_names_and_counts_it() -> None:
    v = _video(
        "v1",
        [
            (0.0, 1.0, "a blink"),  # too_short (1 s < 2 s)
            (0.0, 40.0, "the whole video"),  # too_long (40 s > 0.5 * 60 s)
            (2.0, 8.0, "a man opens a door"),  # kept
            (3.0, 8.0, "A man opens a door."),  # same_text, overlapping: joins the first window
            (20.0, 26.0, "a man opens a door"),  # same_text, apart: a second window
            (2.5, 8.5, "someone enters"),  # duplicate_span (IoU 5.5 / 6.5 > 0.6)
            (30.0, 34.0, "a dog barks"),  # kept
            (40.0, 44.0, "people talk"),  # kept
            (50.0, 55.0, "music plays"),  # generic_texts
        ],
    )
    report = PseudoQueryReport()
    out = select_pseudo_queries([v], _rules(generic_texts=["Music plays"]), report)
    assert [(q.qid, q.query, q.windows) for q in out] == [
        ("pseudo:v1:0", "a man opens a door", ((2.0, 8.0), (20.0, 26.0))),
        ("pseudo:v1:1", "a dog barks", ((30.0, 34.0),)),
        ("pseudo:v1:2", "people talk", ((40.0, 44.0),)),
    ]
    assert all(q.vid == "v1" and q.duration == 60.0 for q in out)
    assert report.made == 9 and report.kept == 3 and report.windows == 4
    assert report.dropped == {
        "too_short": 1,
        "too_long": 1,
        "generic": 1,
        "same_text": 2,
        "duplicate_span": 1,
        "over_max_per_video": 0,
        "past_cut": 0,
    }
    assert report.made == report.kept + sum(report.dropped.values())
    assert set(report.dropped) == set(PSEUDO_DROP_REASONS)


def test_max_per_video_keeps_the_first_in_time() -> None:
    v = _video("v", [(30.0, 34.0, "c"), (0.0, 4.0, "a"), (10.0, 14.0, "b")])
    report = PseudoQueryReport()
    out = select_pseudo_queries([v], _rules(max_per_video=2), report)
    assert [q.query for q in out] == ["a", "b"]
    assert report.dropped["over_max_per_video"] == 1


def test_generic_by_share_needs_enough_videos() -> None:
    """A text in more than generic_share of the videos, and in at least generic_min_videos of them."""
    videos = [_video(f"v{i}", [(0.0, 4.0, "the background"), (10.0, 14.0, f"event {i}")]) for i in range(6)]
    videos[0] = _video("v0", [(10.0, 14.0, "event 0")])  # 5 of 6 videos hold the background line
    report = PseudoQueryReport()
    out = select_pseudo_queries(videos, _rules(generic_share=0.5, generic_min_videos=5), report)
    assert [q.query for q in out] == [f"event {i}" for i in range(6)]
    assert report.dropped["generic"] == 5 and report.generic_texts == ["the background"]
    # Six videos hold it at most five times: with a minimum of 6 videos it is not generic.
    kept = select_pseudo_queries(videos, _rules(generic_share=0.5, generic_min_videos=6))
    assert len(kept) == 11
    assert len(select_pseudo_queries(videos, _rules(generic_share=None, generic_min_videos=1))) == 11


# ---- the encoded-text cache -------------------------------------------------------------------


class FakeEncoder:
    """Deterministic token features (one row per word) and counts of the texts it encoded."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        self.calls.append(list(texts))
        out = []
        for t in texts:
            seed = sum(t.encode())
            tok = np.random.default_rng(seed).normal(size=(len(t.split()) + 2, self.dim)).astype(np.float32)
            pooled = tok.mean(0)
            out.append((tok, pooled / np.linalg.norm(pooled)))
        return out


def test_cache_is_built_once_then_hit_and_holds_the_features(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "pseudo_queries" / "fake"
    enc = FakeEncoder()
    texts = ["b c", "a", "b c", "d e f"]
    cache, how = encoded_event_texts(folder, texts, encoder="fake", dim=8, encode=enc)
    assert how == "built" and cache.texts == ["a", "b c", "d e f"]
    assert sum(len(c) for c in enc.calls) == 3  # each distinct text once
    want_tokens, want_pooled = enc(["d e f"])[0]
    np.testing.assert_array_equal(cache.tokens("d e f"), want_tokens.astype(np.float16))
    np.testing.assert_array_equal(cache.pooled[cache.row("d e f")], want_pooled.astype(np.float16))
    enc.calls.clear()
    again, how = encoded_event_texts(folder, list(reversed(texts)), encoder="fake", dim=8, encode=enc)
    assert how == "hit" and not enc.calls and again.texts == cache.texts
    assert not list(folder.parent.glob(".*tmp*"))  # nothing left of the atomic write


def test_cache_is_rebuilt_when_texts_encoder_or_width_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "pq" / "fake"
    enc = FakeEncoder()
    encoded_event_texts(folder, ["a", "b"], encoder="fake", dim=8, encode=enc)
    with caplog.at_level(logging.INFO, logger="masra.grounding.data.pseudo_cache"):
        cache, how = encoded_event_texts(folder, ["a", "b", "c"], encoder="fake", dim=8, encode=enc)
    assert how == "built" and cache.texts == ["a", "b", "c"]
    assert "event texts changed" in caplog.text
    _, how = encoded_event_texts(folder, ["a", "b", "c"], encoder="other", dim=8, encode=enc)
    assert how == "built"
    _, how = encoded_event_texts(folder, ["a", "b", "c"], encoder="other", dim=4, encode=FakeEncoder(4))
    assert how == "built"
    with pytest.raises(ValueError, match="8-d"):  # an encoder of the wrong width never writes a cache
        encoded_event_texts(tmp_path / "pq" / "bad", ["a"], encoder="bad", dim=8, encode=FakeEncoder(4))
    assert texts_digest(["b", "a", "a"]) == texts_digest(["a", "b"])


def _prior_rows(events: dict[str, list[tuple[float, float, str]]]) -> list[dict[str, object]]:
    return [
        {
            "video_id": vid,
            "duration": 40.0,
            "clip_len": 2.0,
            "num_clips": 20,
            "events": [{"start": s, "end": e, "text": t} for s, e, t in evs],
            "clip_captions": ["c"] * 20,
            "status": "ok",
            "source": "imported",
            "schema_version": SCHEMA_VERSION,
        }
        for vid, evs in events.items()
    ]


def test_prior_shards_that_change_their_texts_invalidate_the_cache(tmp_path: Path) -> None:
    run = PriorRun(tmp_path / "priors", "mine")
    shard = run.dir / "part-000of001-00000.parquet"
    events = {
        "v1": [(0.0, 10.0, "a cat jumps"), (10.0, 20.0, "a dog runs")],
        "v2": [(5.0, 15.0, "a cat jumps")],
    }
    write_table_atomic(rows_to_table(_prior_rows(events), PRIOR_SCHEMA), shard)
    assert set(read_prior_events(run.dir)) == {"v1", "v2"}
    cfg = _rules(generic_share=None)
    enc = FakeEncoder()
    got = load_pseudo_queries(run, ["v1", "v3"], cfg, encoder="fake", dim=8, encode=enc)
    assert [q.query for q in got.queries] == ["a cat jumps", "a dog runs"]
    assert got.report.videos == 1 and got.report.videos_without_priors == 1
    assert got.report.videos_not_in_split == 1 and got.report.cache.startswith("built")
    assert [got.texts.texts[r] for r in got.text_rows] == ["a cat jumps", "a dog runs"]
    assert run.pseudo_queries_dir("fake").is_dir()
    assert load_pseudo_queries(run, ["v1"], cfg, encoder="fake", dim=8, encode=enc).report.cache.startswith(
        "hit"
    )
    events["v2"] = [(5.0, 15.0, "a bird sings")]  # a rerun of stage 1 wrote another text
    write_table_atomic(rows_to_table(_prior_rows(events), PRIOR_SCHEMA), shard)
    again = load_pseudo_queries(run, ["v1"], cfg, encoder="fake", dim=8, encode=enc)
    assert again.report.cache.startswith("built") and "a bird sings" in again.texts.texts


def test_prior_events_refuse_a_missing_run_and_a_video_twice(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no prior shards"):
        read_prior_events(tmp_path / "nope")
    run = tmp_path / "run"
    rows = _prior_rows({"v1": [(0.0, 4.0, "x")]})
    write_table_atomic(rows_to_table(rows, PRIOR_SCHEMA), run / "part-a.parquet")
    write_table_atomic(rows_to_table(rows, PRIOR_SCHEMA), run / "part-b.parquet")
    with pytest.raises(ValueError, match="more than one prior row"):
        read_prior_events(run)


# ---- the pseudo-queries of a step -------------------------------------------------------------


def test_pseudo_stream_covers_each_query_once_per_pass_and_splits_over_processes() -> None:
    n, k = 10, 3
    stream = torch.cat([pseudo_step_rows(n, k, seed=5, step=s) for s in range(10)])  # 3 passes
    for p in range(3):
        assert sorted(stream[p * n : (p + 1) * n].tolist()) == list(range(n))
    assert torch.equal(stream[:3], pseudo_step_rows(n, k, seed=5, step=0))  # a function of the step
    assert not torch.equal(
        stream[:n], torch.cat([pseudo_step_rows(n, k, seed=6, step=s) for s in range(4)])[:n]
    )
    two = torch.cat(
        [pseudo_step_rows(n, 2, seed=5, step=s, rank=r, world=2) for s in range(5) for r in range(2)]
    )
    one = torch.cat([pseudo_step_rows(n, 4, seed=5, step=s) for s in range(5)])
    assert torch.equal(two, one)  # the processes share one global stream


def test_steps_per_epoch_and_pseudo_count() -> None:
    assert pseudo_per_process(0.0, 32) == 0
    assert pseudo_per_process(0.5, 32) == 16 and pseudo_per_process(0.01, 32) == 1
    assert pseudo_per_process(1.0, 32, world=2) == 16
    # With labels the epoch is a pass over them, whatever the pseudo-queries.
    assert steps_per_epoch(100, 1000, 32, weight=2.0) == steps_per_epoch(100, 0, 32) == 4
    # Without, a pass over the pseudo-queries in batches of round(weight * batch_size).
    assert steps_per_epoch(0, 100, 32, weight=0.5) == 7
    assert steps_per_epoch(0, 100, 32, weight=0.5, world=2) == 7


# ---- pseudo-queries in a resident split -------------------------------------------------------


def test_pseudo_rows_follow_the_labelled_ones_with_event_targets(tmp_path: Path) -> None:
    """On the toy world each video's event is its query's window, so pseudo and labelled targets agree."""
    card_path = make_world(tmp_path / "w", num_train=6, num_val=2, event_texts=True)
    card = load_card(str(card_path))
    store = FeatureStore.open(build_feature_store(card, ["train"]))
    queries, _ = load_queries(card, "train")
    run = PriorRun(card.prior_dir, "reference")
    cfg = _rules(min_len=0.0, max_len_share=1.0, generic_texts=["background"])
    pseudo = load_pseudo_queries(run, [q.vid for q in queries], cfg, encoder="toy", dim=TEXT_DIM)
    assert pseudo.report.cache.startswith("hit")  # written by the toy world: no encoder loaded
    split = build_split(card, queries, store, max_clips=card.max_clips, max_text_len=32, pseudo=pseudo)
    assert split.num_labelled == len(queries) == 6 and split.num_pseudo == len(pseudo) == 6
    assert split.report.queries == 6 and split.report.pseudo is pseudo.report
    for j, q in enumerate(split.queries[6:], start=6):
        assert str(q.qid).startswith("pseudo:") and split.meta[j]["qid"] == q.qid
        lab = next(i for i in range(6) if split.meta[i]["vid"] == q.vid)
        assert torch.equal(split.spans[j], split.spans[lab])
        n = split.meta[j]["num_clips"]
        inside = (split.saliency[lab, :n] > 0).float()
        assert torch.equal(split.saliency[j, :n], inside)  # 1 inside the span, 0 outside
        tokens = torch.from_numpy(np.asarray(pseudo.texts.tokens(q.query), np.float32))
        assert torch.equal(split.text[j, : len(tokens)], tokens)
        assert not split.text_mask[j, len(tokens) :].any()
    # A cut before every event: the pseudo-queries are dropped as past_cut, the labelled ones counted as before.
    first = min(q.windows[0][0] for q in pseudo.queries)
    short = max(1, int(first // card.clip_len))
    pseudo = load_pseudo_queries(run, [q.vid for q in queries], cfg, encoder="toy", dim=TEXT_DIM)
    cut = build_split(card, queries, store, max_clips=short, max_text_len=32, pseudo=pseudo)
    assert pseudo.report.dropped["past_cut"] >= 1
    assert pseudo.report.kept == cut.num_pseudo
    assert pseudo.report.made == pseudo.report.kept + sum(pseudo.report.dropped.values())


def test_summary_report_has_pseudo_counts_only_when_on() -> None:
    from masra.grounding.data.report import SplitReport

    plain = SplitReport().to_dict()
    assert "pseudo_queries" not in plain and "pseudo" not in plain
    with_pseudo = SplitReport(pseudo=PseudoQueryReport(made=3, kept=1)).to_dict()
    assert with_pseudo["pseudo_queries"]["made"] == 3
    assert "pseudo" not in SplitReport(pseudo=PseudoQueryReport()).summary()


# ---- a collection without annotation files ----------------------------------------------------


def test_card_without_annotations_and_format_is_valid(tmp_path: Path) -> None:
    card_path = tmp_path / "mine.yaml"
    card_path.write_text(
        f"root: {tmp_path}\nclip_len: 2.0\nmax_clips: 32\n"
        "video_features: {vis: {dir: features/vis, dim: 12}}\ntext_features: {dim: 384}\n",
        encoding="utf-8",
    )
    card = load_card(str(card_path))
    assert card.annotations == {} and card.format == "qvhighlights"
    assert card.text_features.dir == tmp_path / "features" / "text" and card.text_features.dim == 384
    card_path.write_text(card_path.read_text() + "annotations: {val: val.jsonl}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks required key 'format'"):
        load_card(str(card_path))


def test_store_of_videos_without_queries(tmp_path: Path) -> None:
    card = load_card(str(make_world(tmp_path / "w", num_train=4, num_val=2)))
    path = build_feature_store(card, [], tmp_path / "store", videos=["train001", "train000"])
    store = FeatureStore.open(path)
    assert store.video_ids == ["train000", "train001"] and store.qids == []
    assert store.text_data.shape == (0, TEXT_DIM) and store.text_offsets.shape == (0,)
    mtime = (path / "index.json").stat().st_mtime_ns
    assert build_feature_store(card, [], tmp_path / "store", videos=["train000"]) == path
    assert (path / "index.json").stat().st_mtime_ns == mtime  # a subset: reused as it is
    build_feature_store(card, ["val"], tmp_path / "store", videos=["train002"])
    store = FeatureStore.open(path)
    assert store.video_ids == ["train002", "val000", "val001"] and len(store.qids) == 2
    with pytest.raises(ValueError, match="at least one split"):
        build_feature_store(card, [], tmp_path / "other")
