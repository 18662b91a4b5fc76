"""How the committed sample ``tests/data/rehearsal/<dataset>/`` was cut from the real annotation files.

Whole lines, unmodified, in file order, chosen to keep the awkward cases of each release:

- QVHighlights: the first lines of train, val and the labelled test file, and lines of videos shorter
  than 150 s; ``highlight_test_release.jsonl`` keeps the same qids as the labelled test lines;
- Charades-STA (txt release): the first lines of train and test, the two train rows with
  ``start >= end`` (lines 8252 and 8440), and every row of the four longest train videos (over the
  card's ``max_clips`` of 75 one-second clips); the durations file keeps its header and the rows of
  the videos used (fractional durations, as released);
- TACoS: the first rows of a few videos per split, including the longest (23.4 min) and the
  shortest of train and the longest and shortest of val and test.

``python -m scripts.rehearsal.sample --out tests/data/rehearsal`` writes it again from
``../shared/datasets`` (and prints the line numbers taken, for the README).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .sources import SHARED

Lines = list[tuple[int, str]]  # (1-based line number, text)


def _read(path: Path) -> Lines:
    return [(i, ln) for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if ln.strip()]


def _write(path: Path, lines: Lines) -> list[int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(ln for _, ln in lines) + "\n", encoding="utf-8")
    return [i for i, _ in lines]


def _qvh(src: Path, out: Path) -> dict[str, list[int]]:
    picks: dict[str, list[int]] = {}
    counts = {"highlight_train_release.jsonl": (16, 8), "highlight_val_release.jsonl": (8, 4)}
    counts["highlight_test_with_gt.jsonl"] = (8, 4)
    test_qids: set[int] = set()
    for name, (first, short) in counts.items():
        lines = _read(src / name)
        shorter = [x for x in lines[first:] if json.loads(x[1])["duration"] < 150][:short]
        keep = sorted(set(lines[:first]) | set(shorter))
        picks[name] = _write(out / name, keep)
        if "test" in name:
            test_qids = {json.loads(ln)["qid"] for _, ln in keep}
    release = [x for x in _read(src / "highlight_test_release.jsonl") if json.loads(x[1])["qid"] in test_qids]
    picks["highlight_test_release.jsonl"] = _write(out / "highlight_test_release.jsonl", release)
    return picks


def _charades(src: Path, out: Path) -> dict[str, list[int]]:
    durations = _read(src / "charades_v1_durations.tsv")
    length = {ln.split("\t")[0]: float(ln.split("\t")[1]) for i, ln in durations if i > 1}
    train = _read(src / "charades_sta_train.txt")
    vids = {ln.split()[0] for _, ln in train}
    longest = sorted(vids, key=lambda v: -length[v])[:4]
    keep = sorted(set(train[:20]) | {x for x in train if x[0] in (8252, 8440) or x[1].split()[0] in longest})
    test = _read(src / "charades_sta_test.txt")[:16]
    picks = {"charades_sta_train.txt": _write(out / "charades_sta_train.txt", keep)}
    picks["charades_sta_test.txt"] = _write(out / "charades_sta_test.txt", test)
    used = {ln.split()[0] for _, ln in keep + test}
    rows = [durations[0]] + [x for x in durations[1:] if x[1].split("\t")[0] in used]
    picks["charades_v1_durations.tsv"] = _write(out / "charades_v1_durations.tsv", rows)
    return picks


def _tacos(src: Path, out: Path, per_video: int = 6) -> dict[str, list[int]]:
    picks: dict[str, list[int]] = {}
    for split in ("train", "val", "test"):
        lines = _read(src / f"tacos_{split}.jsonl")
        rows = [(x, json.loads(x[1])) for x in lines]
        dur = {r["vid"]: r["duration"] for _, r in rows}
        by_len = sorted(dur, key=lambda v: dur[v])
        vids = {by_len[0], by_len[-1]} | ({rows[0][1]["vid"], by_len[-2]} if split == "train" else set())
        keep: Lines = []
        for v in sorted(vids):
            keep += [x for x, r in rows if r["vid"] == v][:per_video]
        picks[f"tacos_{split}.jsonl"] = _write(out / f"tacos_{split}.jsonl", sorted(keep))
    return picks


def write_sample(out: Path, shared: Path = SHARED) -> dict[str, dict[str, list[int]]]:
    """Write the three samples under ``out``; returns the line numbers taken per file."""
    return {
        "qvhighlights": _qvh(shared / "qvhighlights", out / "qvhighlights"),
        "charades": _charades(shared / "charades", out / "charades"),
        "tacos": _tacos(shared / "tacos", out / "tacos"),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--shared", type=Path, default=SHARED)
    picks = write_sample(p.parse_args(argv).out, p.parse_args(argv).shared)
    for dataset, files in picks.items():
        for name, lines in files.items():
            print(f"{dataset}/{name}: lines {', '.join(map(str, lines))}")


if __name__ == "__main__":
    main()
