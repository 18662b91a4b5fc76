"""Annotation readers: real lines of each format, malformed input, and the real counts when available."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masra.datasets.card import builtin_card_dir, load_card
from masra.datasets.readers import (
    CLIP_END,
    DROP_START_GE_END,
    load_queries,
    read_charades_jsonl,
    read_charades_txt,
    read_durations,
    read_qvhighlights_jsonl,
    read_tacos_jsonl,
)
from masra.datasets.types import AnnotationError

DATA = Path(__file__).parent / "data"
REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _qvh(**overrides: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "qid": 1,
        "query": "a dog runs",
        "duration": 20,
        "vid": "v1",
        "relevant_windows": [[2, 6]],
        "relevant_clip_ids": [1, 2],
        "saliency_scores": [[1, 2, 3], [4, 0, 2]],
    }
    rec.update(overrides)
    return rec


# ---- real lines ------------------------------------------------------------------------------------


def test_qvhighlights_real_lines() -> None:
    queries, report = read_qvhighlights_jsonl(DATA / "qvhighlights_val_sample.jsonl", clip_len=2.0)
    assert [q.qid for q in queries] == [2579, 5071, 5342]
    q = queries[0]
    assert q.vid == "NUsG9BgSes0_210.0_360.0" and q.duration == 150.0
    assert q.windows == ((82.0, 150.0),)
    assert q.relevant_clip_ids is not None and q.saliency_scores is not None
    assert len(q.relevant_clip_ids) == len(q.saliency_scores) == 34
    assert q.saliency_scores[0] == (1, 1, 2)
    assert report.lines == 3 and not report.dropped and not report.clipped


def test_qvhighlights_test_split_unlabelled_without_trailing_newline() -> None:
    path = DATA / "qvhighlights_test_sample.jsonl"
    assert not path.read_bytes().endswith(b"\n")
    queries, report = read_qvhighlights_jsonl(path)
    assert [q.qid for q in queries] == [3158, 7920]
    assert all(not q.labelled and q.relevant_clip_ids is None for q in queries)
    assert report.lines == 2


def test_charades_txt_real_lines_drop_and_clip_are_counted() -> None:
    queries, report = read_charades_txt(
        DATA / "charades_sta_sample.txt", DATA / "charades_durations_sample.tsv"
    )
    assert report.lines == 5
    assert report.dropped == {DROP_START_GE_END: 2}
    assert report.clipped == {CLIP_END: 2}  # Y6R7T ends at 30.0 but lasts 29.42 s
    assert report.examples[DROP_START_GE_END][0].endswith("charades_sta_sample.txt:4")
    assert [q.qid for q in queries] == [0, 1, 2]  # 0-based line index
    assert queries[1].windows == ((20.8, 29.42),)
    assert queries[0].duration == 33.67 and queries[0].query == "a person is putting a book on a shelf."


def test_charades_txt_matches_released_jsonl() -> None:
    txt, _ = read_charades_txt(DATA / "charades_sta_sample.txt", DATA / "charades_durations_sample.tsv")
    jsonl, report = read_charades_jsonl(DATA / "charades_sta_sample.jsonl")
    assert report.lines == 3
    assert [(q.qid, q.vid, q.query, q.duration, q.windows) for q in txt] == [
        (q.qid, q.vid, q.query, q.duration, q.windows) for q in jsonl
    ]


def test_tacos_qids_are_strings() -> None:
    queries, _ = read_tacos_jsonl(DATA / "tacos_sample.jsonl")
    assert [q.qid for q in queries] == ["s17-d69_0", "s17-d69_1", "s17-d69_2"]
    assert queries[0].vid == "s17-d69" and queries[0].windows[0][0] == pytest.approx(7.6190476)


def test_durations_with_and_without_header(tmp_path: Path) -> None:
    assert read_durations(DATA / "charades_durations_sample.tsv")["LEOL6"] == 6.25
    plain = read_durations(_write(tmp_path / "d.tsv", "A\t3.5\nB\t4\n"))
    assert plain == {"A": 3.5, "B": 4.0}
    with pytest.raises(AnnotationError, match=r"d2.tsv:3: duration 'x'"):
        read_durations(_write(tmp_path / "d2.tsv", "vid\tlength\nA\t3\nB\tx\n"))


# ---- malformed input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"qid": 2, "query": "x", "duration": 10', "invalid JSON"),
        (json.dumps(_qvh(qid=2, vid=None)), "vid must be a non-empty string"),
        (json.dumps({k: v for k, v in _qvh(qid=2).items() if k != "query"}), "missing field 'query'"),
        (json.dumps(_qvh(qid=2, relevant_windows=[[6, 6]])), "start >= end"),
        (json.dumps(_qvh(qid=2, duration="long")), "duration must be a number"),
        (json.dumps(_qvh(qid=2, relevant_windows=[[1, "5"]])), "window end must be a number"),
        (json.dumps(_qvh(qid=2, saliency_scores=[[1, 2, 3]])), "2 relevant_clip_ids but 1 saliency_scores"),
        (json.dumps(_qvh(qid=2, saliency_scores=[[1, 2, 3], [1, 2]])), "equal-length"),
        (json.dumps(_qvh(qid=2, saliency_scores=[[1, 2, 3], [1, 2, 9]])), "integers in 0-4"),
        (json.dumps(_qvh(qid=2, relevant_clip_ids=[1, 10])), "clip id 10 is past the last clip"),
        (json.dumps(_qvh(qid=1)), "duplicate qid 1 (first on line 1)"),
        (json.dumps(_qvh(qid="7")), "qid must be an integer"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_qvhighlights_malformed_line(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path / "ann.jsonl", json.dumps(_qvh()) + "\n" + line)  # no trailing newline
    with pytest.raises(AnnotationError) as err:
        read_qvhighlights_jsonl(path, clip_len=2.0)
    assert err.value.line == 2 and err.value.path == str(path)
    assert problem in str(err.value)
    assert str(err.value).startswith(f"{path}:2: ")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("AO8RW 0.0 6.9 a person sits.", "no `##` found"),
        ("AO8RW zero 6.9##a person sits.", "start/end must be numbers"),
        ("AO8RW 6.9##a person sits.", "expected `vid start end`"),
        ("NOPE1 0.0 6.9##a person sits.", "'NOPE1' is not in the durations file"),
        ("AO8RW 0.0 6.9##  ", "empty sentence"),
    ],
)
def test_charades_txt_malformed_line(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path / "sta.txt", "AO8RW 1.0 2.0##ok.\n\n" + line + "\n")
    with pytest.raises(AnnotationError) as err:
        read_charades_txt(path, DATA / "charades_durations_sample.tsv")
    assert err.value.line == 3 and problem in str(err.value)


def test_jsonl_end_past_duration_is_clipped_and_counted(tmp_path: Path) -> None:
    lines = [
        json.dumps({"qid": "a", "query": "q", "duration": 10.0, "vid": "v", "relevant_windows": [[2, 12.5]]}),
        json.dumps({"qid": "b", "query": "q", "duration": 10.0, "vid": "v", "relevant_windows": [[-1, 3]]}),
    ]
    queries, report = read_tacos_jsonl(_write(tmp_path / "t.jsonl", "\n".join(lines) + "\n"))
    assert queries[0].windows == ((2.0, 10.0),) and queries[1].windows == ((0.0, 3.0),)
    assert report.clipped == {CLIP_END: 1, "window start before 0": 1}


def test_window_entirely_past_duration_is_an_error(tmp_path: Path) -> None:
    line = json.dumps({"qid": 3, "query": "q", "duration": 10.0, "vid": "v", "relevant_windows": [[11, 12]]})
    with pytest.raises(AnnotationError, match="starts at or past the video duration"):
        read_charades_jsonl(_write(tmp_path / "c.jsonl", line))


# ---- dispatch through a card -----------------------------------------------------------------------


def _card_file(tmp_path: Path, fmt: str, annotations: dict[str, str], **extra: str) -> Path:
    lines = [f"name: t_{fmt}", f"format: {fmt}", f"root: {DATA}", "annotations:"]
    lines += [f"  {k}: {v}" for k, v in annotations.items()]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    lines += [
        "clip_len: 1.0",
        "max_clips: 75",
        "video_features: {a: {dir: feats/a, dim: 4}}",
        "text_features: {dir: feats/text, dim: 8}",
    ]
    return _write(tmp_path / f"{fmt}.yaml", "\n".join(lines) + "\n")


def test_load_queries_dispatches_on_card_format(tmp_path: Path) -> None:
    cases = [
        ("qvhighlights", "qvhighlights_val_sample.jsonl", {}, 3),
        ("charades_txt", "charades_sta_sample.txt", {"durations": "charades_durations_sample.tsv"}, 3),
        ("charades_jsonl", "charades_sta_sample.jsonl", {}, 3),
        ("tacos", "tacos_sample.jsonl", {}, 3),
    ]
    for fmt, ann, extra, n in cases:
        card = load_card(_card_file(tmp_path, fmt, {"train": ann}, **extra))
        queries, _ = load_queries(card, "train")
        assert len(queries) == n, fmt
    card = load_card(_card_file(tmp_path, "qvhighlights", {"train": "qvhighlights_val_sample.jsonl"}))
    queries, report = load_queries(card, "other", DATA / "qvhighlights_test_sample.jsonl")
    assert len(queries) == 2 and report.path.endswith("qvhighlights_test_sample.jsonl")
    with pytest.raises(KeyError, match="no split 'val'"):
        load_queries(card, "val")
    missing = load_card(_card_file(tmp_path, "tacos", {"train": "nope.jsonl"}))
    with pytest.raises(FileNotFoundError, match=r"split 'train' not found: .*nope.jsonl"):
        load_queries(missing, "train")


def test_shipped_cards_load() -> None:
    names = sorted(p.stem for p in builtin_card_dir().glob("*.yaml"))
    assert {"qvhighlights", "charades", "charades_jsonl", "tacos"} <= set(names)
    for name in names:
        card = load_card(name)
        assert card.annotations and card.video_dim > 0, name


def test_misspelt_card_keys_are_refused_in_overrides_and_reported_in_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(
        ValueError, match=r"card override rot='/data': 'rot' is not a card key; known keys: .*root"
    ):
        load_card("qvhighlights", {"rot": "/data"})
    assert load_card("qvhighlights", {"root": "/data", "annotations.extra": "x.jsonl"}).root == Path("/data")
    path = _card_file(tmp_path, "qvhighlights", {"train": "qvhighlights_val_sample.jsonl"})
    path.write_text(path.read_text() + "clip_lenght: 1.0\n")
    with caplog.at_level("WARNING", logger="masra.datasets.card"):
        card = load_card(path)
    assert "unknown card keys ['clip_lenght']" in caplog.text
    assert card.extra == {"clip_lenght": 1.0}
    caplog.clear()
    with caplog.at_level("WARNING", logger="masra.datasets.card"):
        load_card("fixture")
    assert "unknown card keys" not in caplog.text  # text_encoder, priors and charades_txt are known


# ---- the real files, when present -------------------------------------------------------------------

REAL_COUNTS = [
    ("qvhighlights", "qvhighlights", {"train": 7218, "val": 1550, "test": 1542}),
    ("charades", "charades", {"train": 12408, "test": 3720}),
    ("charades_jsonl", "charades", {"train": 12404, "test": 3720}),
    ("tacos", "tacos", {"train": 9790, "val": 4436, "test": 4001}),
]


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/datasets is not present")
@pytest.mark.parametrize(("card_name", "folder", "counts"), REAL_COUNTS)
def test_real_annotation_counts(card_name: str, folder: str, counts: dict[str, int]) -> None:
    card = load_card(card_name, {"root": str(REAL / folder)})
    for split, n in counts.items():
        queries, report = load_queries(card, split)
        assert report.lines == n, (card_name, split)
        assert len(queries) == n - sum(report.dropped.values())
    if card_name == "charades":
        _, report = load_queries(card, "train")
        assert report.dropped == {DROP_START_GE_END: 4}


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/datasets is not present")
def test_real_charades_txt_equals_released_jsonl() -> None:
    root = REAL / "charades"
    for split in ("train", "test"):
        txt, _ = read_charades_txt(root / f"charades_sta_{split}.txt", root / "charades_v1_durations.tsv")
        jsonl, _ = read_charades_jsonl(root / f"charades_sta_{split}.jsonl")
        assert [(q.vid, q.query, q.duration) for q in txt] == [(q.vid, q.query, q.duration) for q in jsonl]
        for a, b in zip(txt, jsonl, strict=True):
            assert [x for w in a.windows for x in w] == pytest.approx(
                [x for w in b.windows for x in w], abs=1e-6
            )


def test_charades_durations_found_beside_other_annotations(tmp_path: Path) -> None:
    """With --annotations elsewhere, the durations file beside it wins over the card root's."""
    card = load_card("charades", {"root": str(tmp_path / "card_root")})
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    ann = _write(elsewhere / "my_test.txt", "LEOL6 0.0 5.0##a person opens a door.\n")
    with pytest.raises(
        FileNotFoundError, match=r"charades_v1_durations.tsv \(looked beside .*my_test.txt first\)"
    ):
        load_queries(card, "test", ann)
    _write(elsewhere / "charades_v1_durations.tsv", "id\tlength\nLEOL6\t12.5\n")
    [q], _ = load_queries(card, "test", ann)
    assert (q.vid, q.duration) == ("LEOL6", 12.5)
    # the card root's file is used when there is none beside the annotations
    (tmp_path / "card_root").mkdir()
    _write(tmp_path / "card_root" / "charades_v1_durations.tsv", "LEOL6\t30.0\n")
    other = tmp_path / "other"
    other.mkdir()
    [q], _ = load_queries(card, "test", _write(other / "t.txt", "LEOL6 0.0 5.0##a person opens a door.\n"))
    assert q.duration == 30.0


def test_charades_txt_qids_continue_across_the_cards_splits(tmp_path: Path) -> None:
    """Train and test files both start at line 0; their qids (and qid{qid}.npz files) must not clash."""
    from masra.datasets.card import load_card
    from masra.datasets.readers import load_queries

    (tmp_path / "train.txt").write_text("v1 0.0 2.0##a person sits.\nv1 1.0 3.0##a person stands.\n\n")
    (tmp_path / "test.txt").write_text("v2 0.0 1.5##a person walks.\nv2 2.0 4.0##a person runs.")
    (tmp_path / "durations.tsv").write_text("v1\t10.0\nv2\t8.0\n")
    card_path = tmp_path / "card.yaml"
    card_path.write_text(
        f"name: sta\nformat: charades_txt\nroot: {tmp_path}\nclip_len: 1.0\nmax_clips: 75\n"
        "annotations: {train: train.txt, test: test.txt}\ndurations: durations.tsv\n"
        "video_features: {v: {dir: v, dim: 4}}\ntext_features: {dir: t, dim: 4}\n"
    )
    card = load_card(card_path)
    train, _ = load_queries(card, "train")
    test, _ = load_queries(card, "test")
    assert [q.qid for q in train] == [0, 1]
    assert [q.qid for q in test] == [3, 4]  # after train's 3 lines (one blank)
