"""The resident data pipeline: padding, masks, targets, truncation, the prior join and epoch order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _train_world import CLIP_LEN, PRIOR_DIM, TEXT_DIM, VIDEO_DIM, make_world

from masra.datasets.card import load_card
from masra.datasets.readers import load_queries
from masra.datasets.store import FeatureStore
from masra.datasets.store_build import build_feature_store
from masra.datasets.types import Query
from masra.grounding.data.resident import PriorCoverageError, build_split, epoch_batches
from masra.priors.schema import EMBED_SCHEMA, SCHEMA_VERSION
from masra.priors.shards import rows_to_table, write_table_atomic
from masra.priors.table import read_prior_table


def _open(tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    card = load_card(make_world(tmp_path, **kw))  # type: ignore[arg-type]
    store = FeatureStore.open(build_feature_store(card, ["train", "val"]))
    return card, store


def test_padding_masks_tef_and_qvh_targets(tmp_path: Path) -> None:
    card, store = _open(tmp_path, num_train=6, num_val=2, num_clips=10, long_video_clips=14)
    queries, _ = load_queries(card, "train")
    split = build_split(card, queries, store, max_clips=20, max_text_len=4)
    assert split.video.shape == (6, 14, VIDEO_DIM + 2)
    lens = split.video_mask.sum(1).tolist()
    assert lens == [14, 10, 10, 10, 10, 10]
    # Temporal-endpoint features are appended after the clip features: row i = [i / L, (i + 1) / L].
    assert torch.allclose(split.video[1, :10, -2], torch.arange(10) / 10.0)
    assert torch.allclose(split.video[1, :10, -1], (torch.arange(10) + 1) / 10.0)
    assert split.video[1, 10:].abs().sum() == 0  # padding is zero
    # Video features are the store's rows (already L2-normalised by the store).
    np.testing.assert_allclose(
        split.video[2, :10, :VIDEO_DIM].numpy(), store.video(queries[2].vid), rtol=1e-6
    )
    # Text: cut to max_text_len, mask True on real tokens.
    assert split.text.shape == (6, 4, TEXT_DIM)
    for j, q in enumerate(queries):
        n = min(4, store.text(q.qid).shape[0])
        assert split.text_mask[j].sum() == n
        np.testing.assert_allclose(split.text[j, :n].numpy(), store.text(q.qid)[:n], rtol=1e-6)
    # Targets: spans normalised by the clip grid in (center, width); saliency = mean annotator score.
    for j, q in enumerate(queries):
        grid = lens[j] * CLIP_LEN
        (s, e) = q.windows[0]
        assert split.span_count[j] == 1
        assert torch.allclose(split.spans[j, 0], torch.tensor([(s + e) / 2 / grid, (e - s) / grid]))
        assert q.relevant_clip_ids is not None and q.saliency_scores is not None
        for cid, scores in zip(q.relevant_clip_ids, q.saliency_scores, strict=True):
            assert split.saliency[j, cid] == pytest.approx(np.mean(scores))
        outside = torch.ones(split.saliency.shape[1], dtype=torch.bool)
        outside[list(q.relevant_clip_ids)] = False
        assert split.saliency[j, outside].abs().sum() == 0
    assert split.meta[0]["num_clips"] == 14 and split.meta[0]["clip_len"] == CLIP_LEN


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_row_is_the_stores_row_across_gather_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    import masra.grounding.data.resident as data

    monkeypatch.setattr(data, "GATHER_ROWS", 20)  # blocks of 1 video and of 6 texts
    card, store = _open(tmp_path, num_train=6, num_val=2, num_clips=10, long_video_clips=14)
    queries, _ = load_queries(card, "train")
    split = build_split(card, queries, store, max_clips=12, max_text_len=3, dtype=dtype)
    assert split.video.dtype == dtype and split.text.dtype == dtype
    for j, q in enumerate(queries):
        vi = int(split.q2v[j])
        want = torch.from_numpy(store.video(q.vid)[:12]).to(dtype)
        n = want.shape[0]
        assert torch.equal(split.video[vi, :n, :VIDEO_DIM], want)
        tef = torch.from_numpy(np.stack([np.arange(n) / n, (np.arange(n) + 1) / n], 1).astype(np.float32))
        assert torch.equal(split.video[vi, :n, VIDEO_DIM:], tef.to(dtype))
        assert not split.video[vi, n:].any()
        tok = torch.from_numpy(store.text(q.qid)[:3]).to(dtype)
        assert torch.equal(split.text[j, : tok.shape[0]], tok)
        assert not split.text[j, tok.shape[0] :].any()


def test_binary_saliency_without_labels(tmp_path: Path) -> None:
    card, store = _open(tmp_path, num_train=4, num_val=2, saliency=False)
    q = Query(0, "x", "train000", 32.0, ((3.0, 9.0),))  # clips 1..4 overlap [3, 9)
    split = build_split(card, [q], store, max_clips=16, max_text_len=8)
    assert split.saliency[0].nonzero().flatten().tolist() == [1, 2, 3, 4]


def test_truncation_drops_and_clips_windows(tmp_path: Path) -> None:
    card, store = _open(tmp_path, num_train=4, num_val=2, num_clips=16)
    qs = [
        Query(0, "a", "train000", 32.0, ((2.0, 6.0), (20.0, 24.0))),  # second window past the 16 s cut
        Query(1, "b", "train001", 32.0, ((12.0, 20.0),)),  # crosses the cut: clipped to [12, 16]
        Query(2, "c", "train002", 32.0, ((18.0, 22.0),)),  # nothing left
    ]
    split = build_split(card, qs, store, max_clips=8, max_text_len=8, drop_unlabelled=True)
    r = split.report
    assert (r.videos_cut, r.windows_dropped, r.windows_clipped, r.queries_without_windows) == (2, 2, 1, 1)
    assert len(split) == 2 and split.video.shape[1] == 8
    assert split.span_count.tolist() == [1, 1]
    assert torch.allclose(split.spans[1, 0], torch.tensor([14.0 / 16, 4.0 / 16]))
    # The queries (the evaluation ground truth) keep the original windows.
    assert split.queries[0].windows == ((2.0, 6.0), (20.0, 24.0))


def test_batch_is_an_index_gather(tmp_path: Path) -> None:
    card, store = _open(tmp_path, num_train=8, num_val=2)
    priors = read_prior_table(card.prior_dir, "reference", "toy")
    assert priors.source == "reference" and priors.dim == PRIOR_DIM
    queries, _ = load_queries(card, "train")
    split = build_split(
        card, queries, store, max_clips=16, max_text_len=8, priors=priors, prior_dim=PRIOR_DIM
    )
    idx = torch.tensor([5, 2, 7])
    b = split.batch(idx)
    assert len(b) == 3 and b.video.shape == (3, 16, VIDEO_DIM + 2)
    assert torch.equal(b.video[1], split.video[split.q2v[2]])
    assert torch.equal(b.text[2], split.text[7])
    assert b.spans is not None and [s.shape for s in b.spans] == [torch.Size([1, 2])] * 3
    assert [m["qid"] for m in b.meta] == [queries[5].qid, queries[2].qid, queries[7].qid]
    assert b.priors is not None and bool(b.priors.has_prior.all())
    assert b.priors.caption_emb.shape == (3, 16, PRIOR_DIM) and bool(b.priors.caption_mask.all())
    # Event spans are normalised (start, end) on the clip grid.
    q = queries[5]
    assert torch.allclose(b.priors.event_spans[0, 0], torch.tensor(q.windows[0]) / (16 * CLIP_LEN))
    assert split.batch(idx, with_priors=False).priors is None


def test_missing_priors_error_and_partial_coverage(tmp_path: Path) -> None:
    card, store = _open(tmp_path, num_train=10, num_val=2, prior_videos="train-half")
    priors = read_prior_table(card.prior_dir, "reference", "toy")
    queries, _ = load_queries(card, "train")
    with pytest.raises(PriorCoverageError, match=r"5 of 10 videos have no priors \(e.g. train005"):
        build_split(card, queries, store, max_clips=16, max_text_len=8, priors=priors)
    split = build_split(
        card, queries, store, max_clips=16, max_text_len=8, priors=priors, allow_partial_priors=True
    )
    assert split.priors is not None
    assert split.priors.has_prior.tolist() == [True] * 5 + [False] * 5
    assert split.report.videos_without_priors == 5
    assert not bool(split.priors.caption_mask[5:].any())


def test_prior_clip_count_and_dim_mismatch(tmp_path: Path) -> None:
    card, store = _open(tmp_path, num_train=4, num_val=2)
    priors = read_prior_table(card.prior_dir, "reference", "toy")
    queries, _ = load_queries(card, "train")
    with pytest.raises(ValueError, match="expects prior_dim 384"):
        build_split(card, queries, store, max_clips=16, max_text_len=8, priors=priors, prior_dim=384)
    priors.num_clips[priors.index["train001"]] += 3  # another clip length or cut: refused, shard named
    with pytest.raises(
        ValueError,
        match=r"1 videos have priors on another clip grid.*train001 \(priors 19, features 16, duration grid 16\).*parquet",
    ):
        build_split(card, queries, store, max_clips=16, max_text_len=8, priors=priors)


def test_priors_a_clip_or_two_off_are_fitted_in_time(tmp_path: Path) -> None:
    """Floor / round / ceil releases: priors one or two clips off the features train, fitted and counted."""
    card, store = _open(tmp_path, num_train=4, num_val=2)
    queries, _ = load_queries(card, "train")
    base = read_prior_table(card.prior_dir, "reference", "toy")
    plain = build_split(card, queries, store, max_clips=20, max_text_len=8, priors=base)
    assert plain.report.prior_clips_fitted == 0
    priors = read_prior_table(card.prior_dir, "reference", "toy")
    r1, r2 = priors.index["train001"], priors.index["train002"]
    priors.num_clips[r1] -= 2  # the priors end two clips before the features: 14 captions for 16 clips
    priors.caption_valid[r1, 14:] = False
    priors.num_clips[r2] += 1  # one caption past the features' end (ignored)
    split = build_split(card, queries, store, max_clips=20, max_text_len=8, priors=priors)
    assert split.priors is not None and plain.priors is not None
    assert split.report.prior_clips_fitted == 2
    assert split.report.prior_fitted_ids == ["train001", "train002"]
    row = [m["vid"] for m in split.meta].index("train001")
    row = int(split.q2v[row])
    caps = split.priors.caption_emb[row]
    # Clips 0-13 keep their own captions; clips 14 and 15 take the priors' last one (clip 13).
    assert torch.equal(caps[:14], plain.priors.caption_emb[row, :14])
    assert torch.equal(caps[14], plain.priors.caption_emb[row, 13]) and torch.equal(caps[15], caps[13])
    assert bool(split.priors.caption_mask[row, :16].all())
    # Events are in seconds and do not move.
    assert torch.equal(split.priors.event_spans, plain.priors.event_spans)


def test_prior_shard_with_wrong_caption_count(tmp_path: Path) -> None:
    row = {
        "video_id": "v",
        "encoder": "toy",
        "dim": 2,
        "num_clips": 3,
        "event_start": [],
        "event_end": [],
        "event_emb": [],
        "caption_emb": [[0.0, 1.0], [1.0, 0.0]],
        "caption_valid": [True, True, True],
        "schema_version": SCHEMA_VERSION,
    }
    write_table_atomic(
        rows_to_table([row], EMBED_SCHEMA), tmp_path / "r" / "embeddings" / "toy" / "s.parquet"
    )
    with pytest.raises(ValueError, match="caption count different from num_clips"):
        read_prior_table(tmp_path, "r", "toy")
    with pytest.raises(FileNotFoundError, match="no prior embeddings"):
        read_prior_table(tmp_path, "other", "toy")


def test_epoch_batches_deterministic_and_sharded() -> None:
    a = epoch_batches(10, 4, seed=1, epoch=3)
    assert [len(x) for x in a] == [4, 4, 2]
    assert sorted(torch.cat(a).tolist()) == list(range(10))
    assert all(torch.equal(x, y) for x, y in zip(a, epoch_batches(10, 4, seed=1, epoch=3), strict=True))
    assert not torch.equal(torch.cat(a), torch.cat(epoch_batches(10, 4, seed=1, epoch=4)))
    r0 = epoch_batches(10, 4, seed=1, epoch=3, rank=0, world=2)
    r1 = epoch_batches(10, 4, seed=1, epoch=3, rank=1, world=2)
    assert len(r0) == len(r1) == 3 and all(len(x) == 2 for x in r0 + r1)
    # Interleaving the ranks' shares gives the global order (padded by wrapping around).
    merged = torch.cat([torch.cat([x, y]) for x, y in zip(r0, r1, strict=True)])
    assert torch.equal(merged[:10], torch.cat(a)) and set(merged[10:].tolist()) <= set(range(10))
    with pytest.raises(ValueError, match="not a multiple"):
        epoch_batches(10, 3, seed=0, epoch=0, world=2)


def test_prior_events_past_the_cut_are_dropped_and_crossing_ones_clipped(tmp_path: Path) -> None:
    card, store = _open(tmp_path, num_train=12, num_val=2, num_clips=16)
    priors = read_prior_table(card.prior_dir, "reference", "toy")
    queries, _ = load_queries(card, "train")
    split = build_split(card, queries, store, max_clips=8, max_text_len=8, priors=priors)
    cut = 8 * CLIP_LEN
    starts = [q.windows[0][0] for q in queries]  # the toy world's one event per video is the GT window
    assert split.report.events_dropped == sum(s >= cut for s in starts) > 0
    assert split.priors is not None
    pri = split.priors
    for i, q in enumerate(queries):
        (s, e) = q.windows[0]
        if s >= cut:
            assert not bool(pri.event_mask[i].any())
        else:
            expected = torch.tensor([s / cut, min(e, cut) / cut])
            assert bool(pri.event_mask[i, 0]) and torch.allclose(pri.event_spans[i, 0], expected)
    assert pri.caption_mask.shape == (12, 8) and bool(pri.caption_mask.all())


def test_long_video_priors_cut_like_the_features(tmp_path: Path) -> None:
    """A video longer than max_clips: priors cut by stage 1 at max_clips, or uncut, join its kept clips."""
    card, store = _open(tmp_path, num_train=4, num_val=2, long_video_clips=30)
    queries, _ = load_queries(card, "train")
    priors = read_prior_table(card.prior_dir, "reference", "toy")
    assert int(priors.num_clips[priors.index["train000"]]) == 30  # written for the whole video
    split = build_split(card, queries, store, max_clips=20, max_text_len=8, priors=priors)
    assert split.report.videos_cut == 1 and split.report.prior_clips_fitted == 0
    priors.num_clips[priors.index["train000"]] = 20  # as stage 1 writes it under max_clips 20
    cut = build_split(card, queries, store, max_clips=20, max_text_len=8, priors=priors)
    assert cut.priors is not None and split.priors is not None
    assert torch.equal(cut.priors.caption_emb, split.priors.caption_emb)
    assert cut.report.videos_cut == 1 and cut.report.prior_clips_fitted == 0
    # Priors cut at 20 cannot serve a run that keeps 25 clips: refused, not stretched.
    with pytest.raises(ValueError, match=r"train000 \(priors 20, features 30, kept 25, duration grid 30\)"):
        build_split(card, queries, store, max_clips=25, max_text_len=8, priors=priors)


def test_prior_edge_error_is_the_median_edge_distance_of_matched_events() -> None:
    from masra.grounding.data.priors import prior_edge_error

    # Video 0: events (0.2, 0.6) and (0.7, 0.9); video 1: one event (0.0, 0.5).
    events = torch.tensor([[[0.2, 0.6], [0.7, 0.9]], [[0.0, 0.5], [0.0, 0.0]]])
    mask = torch.tensor([[True, True], [True, False]])

    # Query 0 (video 0): window (0.24, 0.6), matches event 0: edges 0.04 / 0.4 = 0.1 and 0.
    # Query 1 (video 1): window (0.05, 0.45), matches: edges 0.1 and 0.1. Query 2: window (0.1, 0.15) on
    # video 0 overlaps nothing enough (IoU < 0.5), so it is not matched.
    def cw(s: float, e: float) -> list[float]:
        return [(s + e) / 2, e - s]

    windows = torch.tensor([[cw(0.24, 0.6)], [cw(0.05, 0.45)], [cw(0.1, 0.15)]])
    err, n = prior_edge_error(windows, torch.tensor([1, 1, 1]), torch.tensor([0, 1, 0]), events, mask)
    assert n == 2 and err == pytest.approx(0.1, abs=1e-4)  # median of 0.1, 0, 0.1, 0.1
    none, zero = prior_edge_error(windows[2:], torch.tensor([1]), torch.tensor([0]), events, mask)
    assert none is None and zero == 0
