"""Parsing and validation of MLLM output: golden garbage, clamping, merging, statuses."""

from __future__ import annotations

import pytest

from masra.prior_gen.parsing import (
    FAILED,
    OK,
    PARTIAL,
    Event,
    ParseConfig,
    caption_status,
    combine_status,
    find_json,
    merge_events,
    parse_caption,
    parse_captions_dense,
    parse_events,
    salvage_list,
)

GARBAGE = [
    "",
    "\n\n\n\n",
    "walks the , , kitchen start end",
    "{not json at all",
    '{"events": "a man walks"}',
    '{"events": [1, 2, "x"]}',
    "[[[[",
    '{"foo": [{"start": 1, "end": 2, "description": "x"}]}',
    '{"events": [{"start": "a", "end": 2, "description": "hello"}]}',
    '{"events": [{"start": 1, "end": 2, "description": "  ,.;  "}]}',
    '{"events": [{"start": NaN, "end": 2, "description": "x"}]}',
    "\x00\x01\x02\ufffd",
]


@pytest.mark.parametrize("text", GARBAGE)
def test_garbage_gives_no_events_and_failed(text: str) -> None:
    out = parse_events(text, duration=30.0)
    assert out.events == [] and out.status == FAILED and out.notes


def test_clean_output_is_ok_and_sorted() -> None:
    text = (
        'Sure! ```json\n{"events": [{"start": 10, "end": 20.5, "description": "B"},'
        ' {"start": "2.0", "end": 4, "description": "  a   man\nwalks "}]}```'
    )
    out = parse_events(text, duration=30.0)
    assert out.status == OK and out.notes == []
    assert out.events == [Event(2.0, 4.0, "a man walks"), Event(10.0, 20.5, "B")]


def test_clamping_and_dropping() -> None:
    items = [
        {"start": -5, "end": 3, "text": "clamped start"},
        {"start": 25, "end": 99, "description": "clamped end"},
        {"start": 40, "end": 50, "description": "entirely after the end"},
        {"start": 8, "end": 8, "description": "zero length"},
        {"start": 9, "end": 7, "description": "reversed"},
        {"start": 1, "end": 2, "description": ""},
    ]
    import json

    out = parse_events(json.dumps({"events": items}), duration=30.0)
    assert out.status == PARTIAL
    assert out.events == [Event(0.0, 3.0, "clamped start"), Event(25.0, 30.0, "clamped end")]
    assert "dropped 3 events (start >= end after clamping)" in out.notes
    assert "dropped 1 events (empty text)" in out.notes


def test_merging_near_duplicates() -> None:
    events = [
        Event(10.0, 14.0, "A dog runs."),
        Event(0.0, 5.0, "a dog runs"),
        Event(5.3, 8.0, "A DOG RUNS"),  # same text, within the 0.5 s gap of [0, 5]
        Event(20.0, 30.0, "first text"),
        Event(20.2, 30.0, "different text, same span"),  # IoU 0.98 >= 0.9
        Event(20.0, 25.0, "distinct"),
    ]
    merged = merge_events(events, merge_gap=0.5, dup_iou=0.9)
    assert merged == [
        Event(0.0, 8.0, "a dog runs"),
        Event(10.0, 14.0, "A dog runs."),  # same text but 2 s away: kept apart
        Event(20.0, 25.0, "distinct"),
        Event(20.0, 30.0, "first text"),
    ]


def test_truncation_and_cap_make_partial() -> None:
    text = (
        '{"events": ['
        + ",".join(f'{{"start": {i}, "end": {i + 1}, "text": "e{i}"}}' for i in range(5))
        + "]}"
    )
    capped = parse_events(text, duration=10.0, cfg=ParseConfig(max_events=3))
    assert [e.text for e in capped.events] == ["e0", "e1", "e2"] and capped.status == PARTIAL
    trunc = parse_events(text, duration=10.0, truncated=True)
    assert len(trunc.events) == 5 and trunc.status == PARTIAL
    salvaged = parse_events(text[:-10], duration=10.0, truncated=True)  # the 5th event is cut off
    assert len(salvaged.events) == 4 and salvaged.status == PARTIAL


def test_bare_list_and_find_json() -> None:
    assert parse_events('[{"start": 1, "end": 2, "event": "x1"}]', 5.0).events == [Event(1.0, 2.0, "x1")]
    assert find_json("noise [1, 2] {}") == [1, 2]
    assert find_json("no json") is None


def test_captions() -> None:
    assert parse_caption("  A man opens the door.\nsecond line") == "A man opens the door."
    assert parse_caption('{"caption": "a cat"}') == "a cat"
    assert parse_caption('{"caption": ') == ""
    assert parse_caption("\n\n , ;") == ""
    caps, notes = parse_captions_dense('{"captions": ["a", {"caption": "b"}, "", 7]}', num_clips=3)
    assert caps == ["a", "b", ""] and notes == ["4 captions for 3 clips"]
    caps, notes = parse_captions_dense("garbage", num_clips=2)
    assert caps == ["", ""] and notes
    assert caption_status(["a", "b"]) == (OK, [])
    assert caption_status(["a", ""]) == (PARTIAL, ["1/2 clip captions empty"])
    assert caption_status(["", ""])[0] == FAILED


@pytest.mark.parametrize(
    ("ev", "cap", "want"),
    [
        (OK, OK, OK),
        (OK, PARTIAL, PARTIAL),
        (FAILED, OK, PARTIAL),
        (FAILED, FAILED, FAILED),
        (PARTIAL, FAILED, PARTIAL),
    ],
)
def test_combine_status(ev: str, cap: str, want: str) -> None:
    assert combine_status(ev, cap) == want


def test_parse_config_validation() -> None:
    with pytest.raises(ValueError, match="max_events"):
        ParseConfig(max_events=0)
    with pytest.raises(ValueError, match="dup_iou"):
        ParseConfig(dup_iou=0.0)


def test_salvage_of_outputs_cut_at_the_token_limit() -> None:
    cut = '{"events": [{"start": 1, "end": 2, "description": "a"}, {"start": 3, "end": 4, "description": "b"}, {"sta'
    out = parse_events(cut, duration=10.0, truncated=True)
    assert out.events == [Event(1.0, 2.0, "a"), Event(3.0, 4.0, "b")] and out.status == PARTIAL
    assert out.notes == ["output hit the token limit; kept the 2 complete events before it"]
    assert parse_events(cut, duration=10.0, truncated=False).status == FAILED  # only when the limit cut it
    assert salvage_list('{"events": [', "events") == [] and salvage_list("{}", "events") is None
    assert parse_caption('{"caption": "a man opens the do') == "a man opens the do"
    caps, notes = parse_captions_dense('{"captions": ["one", "two", "thr', num_clips=4)
    assert caps == ["one", "two", "", ""] and notes == ["2 captions for 4 clips"]
