"""`masra priors import`: validation of each kind of bad row (with file:line), caption refitting, the
written run (read back, embedded, loaded by stage 2), the CLI's exit codes, overwrite, determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from test_prior_embed import HashEncoder

from masra.pipelines.cli import main
from masra.prior_gen.embed import embed_prior_run
from masra.prior_gen.importer import (
    SHARD_NAME,
    ImportReport,
    check_video_id,
    import_priors,
    parse_import_file,
    refit_captions,
)
from masra.prior_gen.report import format_report, prior_report
from masra.priors.schema import PRIOR_SCHEMA, SOURCES
from masra.priors.shards import read_shards
from masra.priors.table import prior_source, read_prior_table

STAMP = "2024-05-01T12:00:00Z"


def video(vid: str, duration: float = 6.0, **kw: Any) -> dict[str, Any]:
    """A valid input row on a 2 s clip grid (6 s -> 3 clips)."""
    row: dict[str, Any] = {
        "vid": vid,
        "duration": duration,
        "events": [
            {"start": 0.0, "end": 2.5, "text": f"{vid} starts"},
            {"start": 2.5, "end": 6.0, "text": "then"},
        ],
        "clip_captions": [f"{vid} clip {i}" for i in range(round(duration / 2))],
    }
    row.update(kw)
    return row


def write_lines(path: Path, lines: list[Any]) -> Path:
    """Write rows (dicts as JSON, strings verbatim) one per line."""
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def run_import(src: Path, run: Path, **kw: Any) -> ImportReport:
    return import_priors(src, run, dataset="tiny", clip_len=2.0, max_clips=16, created_at=STAMP, **kw)


def test_imported_is_a_known_source() -> None:
    assert "imported" in SOURCES


def test_good_file_round_trips_through_embed_and_stage2(tmp_path: Path) -> None:
    rows = [video("v1"), video("v2", duration=4.0, events=[]), video("v3", duration=10.0)]
    rows[2]["events"] = [{"start": 1.0, "end": 10.0, "text": "all of it"}]
    src = write_lines(tmp_path / "caps.jsonl", [rows[0], "", rows[1], "   ", rows[2]])
    prior_dir = tmp_path / "priors"
    rep = run_import(src, prior_dir / "ext", model_id="gpt-x")

    assert (rep.rows_read, rep.rows_written, rep.refused, rep.refitted) == (3, 3, [], [])
    assert [p.name for p in (prior_dir / "ext").glob("*.parquet")] == [SHARD_NAME]
    table = read_shards(prior_dir / "ext", PRIOR_SCHEMA)
    got = table.to_pylist()
    assert [r["video_id"] for r in got] == ["v1", "v2", "v3"]  # file order
    for r, want in zip(got, rows, strict=True):
        assert r["duration"] == want["duration"]
        assert r["events"] == want["events"]
        assert r["clip_captions"] == want["clip_captions"]
        assert r["num_clips"] == len(want["clip_captions"])
        assert (r["source"], r["status"], r["backend"], r["prompt_version"]) == (
            "imported",
            "ok",
            "import",
            "import",
        )
        assert (r["model_id"], r["created_at"], r["clip_len"]) == ("gpt-x", STAMP, 2.0)
    manifest = json.loads((prior_dir / "ext" / "manifest.json").read_text())
    assert manifest == rep.manifest
    assert manifest["shards"] == [SHARD_NAME] and manifest["source"] == "imported"
    assert manifest["counts"] == {
        "videos": 3,
        "ok": 3,
        "partial": 0,
        "failed": 0,
        "events": 3,
        "clip_captions": 10,
    }
    assert manifest["import"]["file"] == "caps.jsonl" and manifest["import"]["rows_refused"] == 0

    assert "gpt-x (import, prompt import)" in format_report(prior_report(prior_dir / "ext", []))
    embed_prior_run(prior_dir / "ext", HashEncoder())
    assert prior_source(prior_dir / "ext") == "imported"
    pt = read_prior_table(prior_dir, "ext", "hash8")
    assert pt.source == "imported" and pt.video_ids == ["v1", "v2", "v3"]
    assert pt.num_clips.tolist() == [3, 2, 5] and pt.event_count.tolist() == [2, 0, 1]
    assert pt.caption_valid.sum() == 10


GOOD = video("good")
BAD_ROWS = [
    ('{"vid": "x", "duration": 6', "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    (json.dumps({k: v for k, v in video("x").items() if k != "events"}), "missing key(s) 'events'"),
    (
        json.dumps(video("x", events=[{"start": 1.0, "end": 7.0, "text": "t"}])),
        "span [1, 7] is outside the video [0, 6]",
    ),
    (json.dumps(video("x", events=[{"start": -0.5, "end": 2.0, "text": "t"}])), "outside the video"),
    (json.dumps(video("x", events=[{"start": 3.0, "end": 3.0, "text": "t"}])), "start 3 is not before end 3"),
    (json.dumps(video("x", events=[{"start": 4.0, "end": 3.0, "text": "t"}])), "start 4 is not before end 3"),
    (json.dumps(video("x", events=[{"start": 0.0, "end": 3.0, "text": "  "}])), "events[0].text is empty"),
    (json.dumps(video("x", events=[{"start": 0.0, "end": 3.0}])), "events[0]: missing key(s) 'text'"),
    (
        json.dumps(video("x", events=[{"start": "0", "end": 3.0, "text": "t"}])),
        "events[0].start must be a number",
    ),
    (json.dumps(video("a/b")), "vid 'a/b' is a path"),
    (json.dumps(video("a\\b")), "is a path"),
    (json.dumps(video("..")), "contains '..'"),
    (json.dumps(video("x..y")), "contains '..'"),
    (json.dumps(video("/abs/v1")), "is a path"),
    (json.dumps(video("C:v1")), "is an absolute path"),
    (json.dumps(video(".hidden")), "starts with '.'"),
    (json.dumps(video("a\u0000b")), "NUL or control character"),
    (json.dumps(video("a\tb")), "NUL or control character"),
    (json.dumps(video(" v ")), "leading or trailing white space"),
    (json.dumps(video("")), "vid must be a non-empty string"),
    (json.dumps({**video("x"), "vid": 7}), "vid must be a string, got int"),
    (json.dumps(GOOD), "duplicate vid 'good' (first on line 1)"),
    (
        '{"vid": "x", "duration": NaN, "events": [], "clip_captions": ["a"]}',
        "duration must be finite, got nan",
    ),
    ('{"vid": "x", "duration": Infinity, "events": [], "clip_captions": ["a"]}', "duration must be finite"),
    (json.dumps(video("x", duration=0)), "duration must be > 0"),
    (json.dumps(video("x", duration=True)), "duration must be a number, got boolean"),
    (json.dumps(video("x", clip_captions="a b c")), "clip_captions must be a list, got string"),
    (json.dumps(video("x", clip_captions=["a", 3, "c"])), "clip_captions[1] must be a string"),
    (json.dumps(video("x", clip_captions=[])), "clip_captions is empty; the video has 3 clips"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_ROWS, ids=[r for _, r in BAD_ROWS])
def test_each_bad_row_is_refused_with_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    src = write_lines(tmp_path / "in.jsonl", [GOOD, "", line, video("after")])
    parsed = parse_import_file(src, clip_len=2.0, max_clips=16)
    assert len(parsed.refused) == 1, parsed.refused
    assert parsed.refused[0].startswith(f"{src}:3: ") and reason in parsed.refused[0], parsed.refused[0]
    assert [v.vid for v in parsed.videos] == ["good", "after"] and parsed.rows_read == 3


def test_not_utf8_line_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe{}\n")
    assert parse_import_file(src, clip_len=2.0).refused == [f"{src}:2: not UTF-8 text (byte 1)"]


def test_vid_checks_accept_real_ids() -> None:
    for vid in ["j7rJstUseKg_360.0_510.0", "3MSZA", "s13-d21", "v.1"]:
        assert check_video_id(vid) is None


def test_caption_count_mismatch_is_refitted_with_a_warning(tmp_path: Path) -> None:
    six = video("six", clip_captions=["a", "b", "c", "d", "e", "f"])  # 6 captions, 3 clips
    two = video("two", clip_captions=["early", "late"])  # 2 captions, 3 clips
    src = write_lines(tmp_path / "in.jsonl", [GOOD, six, two])
    rep = run_import(src, tmp_path / "run")
    assert rep.refused == [] and rep.rows_written == 3
    assert rep.refitted == [
        f"{src}:2: vid 'six' has 6 clip captions for 3 clips of 2 s; refitted by nearest-neighbour resampling in time",
        f"{src}:3: vid 'two' has 2 clip captions for 3 clips of 2 s; refitted by nearest-neighbour resampling in time",
    ]
    rows = {r["video_id"]: r for r in read_shards(tmp_path / "run", PRIOR_SCHEMA).to_pylist()}
    assert rows["six"]["clip_captions"] == ["b", "d", "f"]  # clip centres 1, 3, 5 s
    assert rows["two"]["clip_captions"] == ["early", "late", "late"]  # centre 3 s is in the second half
    assert rep.manifest["import"]["captions_refitted"] == 2


def test_refit_follows_the_capped_clip_grid(tmp_path: Path) -> None:
    # 40 s at 2 s is 20 clips, capped to 16 by max_clips: the 20 captions are refitted to the 16 clips
    long = video("long", duration=40.0, events=[], clip_captions=[f"c{i}" for i in range(20)])
    rep = run_import(write_lines(tmp_path / "in.jsonl", [long]), tmp_path / "run")
    assert len(rep.refitted) == 1 and "20 clip captions for 16 clips" in rep.refitted[0]
    row = read_shards(tmp_path / "run", PRIOR_SCHEMA).to_pylist()[0]
    assert row["num_clips"] == 16 and row["clip_captions"] == [f"c{i}" for i in range(16)]


def test_refit_captions_nearest_in_time() -> None:
    assert refit_captions(["a", "b"], 4, 8.0, 2.0) == ["a", "a", "b", "b"]
    assert refit_captions(["only"], 3, 5.0, 2.0) == ["only"] * 3
    # the last clip may run past the duration (5 s -> 3 clips of 2 s): its centre is clamped
    assert refit_captions(["a", "b", "c", "d", "e"], 3, 5.0, 2.0) == ["b", "d", "e"]


def test_same_input_and_timestamp_give_identical_bytes(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "in.jsonl", [GOOD, video("v2", clip_captions=["x"])])
    run_import(src, tmp_path / "a" / "run")
    run_import(src, tmp_path / "b" / "run")  # same run name: the manifest records it
    for name in [SHARD_NAME, "manifest.json"]:
        assert (tmp_path / "a" / "run" / name).read_bytes() == (tmp_path / "b" / "run" / name).read_bytes()


def test_existing_run_is_refused_unless_overwrite(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "in.jsonl", [GOOD])
    run = tmp_path / "run"
    run_import(src, run)
    stale = run / "embeddings" / "hash8" / SHARD_NAME
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="already holds 1 prior shard"):
        run_import(src, run)
    write_lines(src, [video("new")])
    run_import(src, run, overwrite=True)
    assert not stale.exists()
    assert pq.read_table(run / SHARD_NAME).column("video_id").to_pylist() == ["new"]


def test_no_valid_rows_writes_nothing(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "in.jsonl", ["oops"])
    with pytest.raises(ValueError, match="no valid rows"):
        run_import(src, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def card(tmp_path: Path) -> Path:
    """A card with no data at all (import needs only its clip grid and prior_dir)."""
    path = tmp_path / "tiny.yaml"
    spec = {
        "name": "tiny",
        "format": "charades_jsonl",
        "root": str(tmp_path),
        "annotations": {},
        "clip_len": 2.0,
        "max_clips": 16,
        "video_features": {"x": {"dir": "features/x", "dim": 4}},
        "text_features": {"dir": "features/t", "dim": 4},
        "prior_dir": "priors",
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def test_cli_refuses_bad_rows_then_skip_bad_writes_the_good_ones(tmp_path: Path, card: Path) -> None:
    src = write_lines(tmp_path / "in.jsonl", [GOOD, video("a/b"), video("short", clip_captions=["x"])])
    run = tmp_path / "priors" / "ext"
    code, out = invoke("priors", "import", str(src), "-d", str(card), "--priors-run", "ext")
    assert code == 2, out
    assert f"refused: {src}:2: vid 'a/b' is a path" in out
    assert f"warning: {src}:3: vid 'short' has 1 clip captions for 3 clips" in out
    assert "1 of 3 rows refused; nothing written" in out and "--skip-bad" in out
    assert not run.exists()

    code, out = invoke("priors", "import", str(src), "-d", str(card), "--priors-run", "ext", "--skip-bad")
    assert code == 0, out
    assert f"refused: {src}:2:" in out and f"imported 2 of 3 rows into {run}" in out
    assert pq.read_table(run / SHARD_NAME).column("video_id").to_pylist() == ["good", "short"]


def test_cli_existing_run_needs_overwrite(tmp_path: Path, card: Path) -> None:
    src = write_lines(tmp_path / "in.jsonl", [GOOD])
    args = ("priors", "import", str(src), "--dataset", str(card), "--model-id", "my-mllm")
    assert invoke(*args)[0] == 0
    code, out = invoke(*args)
    assert code == 2 and "already holds 1 prior shard" in out and "--overwrite" in out
    code, out = invoke(*args, "--overwrite")
    assert code == 0, out
    row = pq.read_table(tmp_path / "priors" / "imported" / SHARD_NAME).to_pylist()[0]
    assert (row["model_id"], row["source"]) == ("my-mllm", "imported")


def test_cli_old_run_flag_still_imports_with_a_warning(tmp_path: Path, card: Path) -> None:
    """``--run``, the flag's name before ``--priors-run``, still works (hidden, deprecated)."""
    src = write_lines(tmp_path / "in.jsonl", [GOOD])
    code, out = invoke("priors", "import", str(src), "-d", str(card), "--run", "old")
    assert code == 0, out
    assert "--run is deprecated; use --priors-run" in out and "--priors-run old" in out
    assert (tmp_path / "priors" / "old" / SHARD_NAME).is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--priors-run", "../elsewhere"), "run name '../elsewhere' is a path"),
        (("--priors-run", ".x"), "starts with '.'"),
        (("--set", "clip_len=0"), "clip_len must be > 0"),
    ],
)
def test_cli_bad_options(tmp_path: Path, card: Path, args: tuple[str, ...], message: str) -> None:
    src = write_lines(tmp_path / "in.jsonl", [GOOD])
    code, out = invoke("priors", "import", str(src), "--dataset", str(card), *args)
    assert code != 0 and message in out, out


def test_cli_all_rows_bad_fails_even_with_skip_bad(tmp_path: Path, card: Path) -> None:
    src = write_lines(tmp_path / "in.jsonl", ["{}", "[]"])
    code, out = invoke("priors", "import", str(src), "-d", str(card), "--skip-bad")
    assert code == 2 and "no valid rows (2 read, 2 refused)" in out
    assert "Traceback" not in out
