"""The one clip grid (masra/datasets/grid.py) and its users agree on every count."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from masra.datasets.grid import counts_agree, kept_clips, num_clips, protocol_clips
from masra.datasets.lengths import check_lengths
from masra.grounding.infer.decode import saliency_row_length
from masra.prior_gen.import_parse import parse_import_file

MASRA = Path(__file__).resolve().parents[1] / "masra"


@pytest.mark.parametrize(
    ("duration", "clip_len", "expected"),
    [
        (150.0, 2.0, 75),  # QVHighlights, on the grid
        (30.4, 1.0, 31),  # Charades-STA: a fractional part below .5 still needs its last clip
        (30.5, 1.0, 31),
        (30.0, 1.0, 30),
        (52.000001, 2.0, 26),  # float noise on a grid line is not a clip
        (0.3, 1.0, 1),  # at least one clip
        (0.0, 2.0, 1),
        (1403.6, 2.0, 702),  # the longest TACoS video
    ],
)
def test_num_clips_is_the_ceiling_of_the_duration(duration: float, clip_len: float, expected: int) -> None:
    assert num_clips(duration, clip_len) == expected


def test_kept_clips_cuts_at_max_clips() -> None:
    assert kept_clips(124.3, 1.0, 75) == 75
    assert kept_clips(30.2, 1.0, 75) == 31
    with pytest.raises(ValueError, match="max_clips"):
        kept_clips(10.0, 1.0, 0)


@pytest.mark.parametrize(
    "bad", [(10.0, 0.0), (10.0, -1.0), (float("nan"), 1.0), (-1.0, 1.0), (10.0, math.inf)]
)
def test_num_clips_refuses_bad_numbers(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        num_clips(*bad)


def test_floor_round_and_ceil_releases_agree_with_the_grid() -> None:
    rng = np.random.default_rng(0)
    for duration in rng.uniform(1.0, 200.0, size=500):
        grid = num_clips(float(duration), 1.0)
        for other in (math.floor(duration), round(duration), math.ceil(duration), grid + 1):
            assert counts_agree(grid, max(1, other)), (duration, other)


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        (30, 31, True),  # floor against ceil
        (75, 77, True),  # two clips at the end of a long video
        (1, 2, True),  # one clip, even where it doubles a short video
        (75, 124, False),  # an uncut video against a cut one
        (15, 30, False),  # another clip length
        (40, 50, False),  # another cut of the video
        (3, 5, False),  # two clips, but a factor 1.67
    ],
)
def test_counts_agree(a: int, b: int, agree: bool) -> None:
    assert counts_agree(a, b) is agree
    assert counts_agree(b, a) is agree


def test_protocol_clips_is_the_official_evaluation_rule() -> None:
    assert protocol_clips(150.0, 2.0) == 75
    assert protocol_clips(31.9, 2.0) == 15  # the official HL evaluation drops a last partial clip


def test_users_of_the_grid_agree(tmp_path: Path) -> None:
    """Saliency rows, length checks and the prior importer all count clips by the grid."""
    durations = (30.4, 30.5, 31.0, 7.01, 149.99, 0.4)
    rows = [
        json.dumps({"vid": f"v{i}", "duration": d, "events": [], "clip_captions": ["a", "b"]})
        for i, d in enumerate(durations)
    ]
    (tmp_path / "priors.jsonl").write_text("\n".join(rows), encoding="utf-8")
    imported = parse_import_file(tmp_path / "priors.jsonl", clip_len=1.0, max_clips=100)
    assert [v.num_clips for v in imported.videos] == [31, 31, 31, 8, 100, 1]
    for duration in durations:
        n = num_clips(duration, 1.0)
        assert saliency_row_length(1000, duration, 1.0) == n
        check = check_lengths({"v": duration}, {"v": n}, 1.0)
        assert check.length_mismatch == 0 and check.features_longer_than_duration == 0


def _own_clip_rules(path: Path) -> list[str]:
    """Calls ``ceil / floor / round / int (... duration ... / ... clip_len ...)`` in ``path``'s code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = ast.unparse(node.func).rsplit(".", 1)[-1]
        arg = node.args[0]
        if name in {"ceil", "floor", "round", "int"} and isinstance(arg, ast.BinOp):
            text = ast.unparse(arg)
            if "duration" in ast.unparse(arg.left) and "clip_len" in text:
                found.append(f"{path.relative_to(MASRA)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_one_clip_count_rule_in_the_package() -> None:
    """No module of masra counts clips from a duration by its own formula; they call the grid."""
    found = [hit for p in sorted(MASRA.rglob("*.py")) if p.name != "grid.py" for hit in _own_clip_rules(p)]
    assert found == []


def test_the_rule_finder_finds_a_rule(tmp_path: Path) -> None:
    sample = MASRA / "_sample_for_test.py"
    try:
        sample.write_text("import math\nn = math.ceil(q.duration / card.clip_len - 1e-9)\n")
        assert len(_own_clip_rules(sample)) == 1
    finally:
        sample.unlink()
