"""Each bad input of issue 15's holes, fed to the ``masra`` command that reads it.

A case copies the fixture (its store left out) into its own folder, spoils one file, runs one
command and checks the outcome: a refusal (exit status not 0) whose output names the file (with its
line, key or value where the issue asks for them), or, for the inputs the issue wants warned about,
a warning with its count. A raw Python traceback does not count as a refusal that names the file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import Ctx, Row, masra, run, tail
from .stage1 import stage1_cmd
from .training import train_cmd


@dataclass
class Probe:
    """What a case runs and what its output must contain: ``needles`` name the file (line, key)."""

    cmd: list[str]
    needles: list[str]
    warn: str | None = None  # for a warned input: the warning text that must appear (rc 0)
    before: list[list[str]] = field(default_factory=list)  # commands that must succeed first


@dataclass
class Case:
    name: str
    hole: str  # the hole(s) it belongs to, "-" for one beyond them (a damaged file)
    expect: str  # "refused", "warned", or "refused or warned" (either will do)
    make: Callable[[Ctx, Path], Probe]


@dataclass
class Outcome:
    """How one bad input was handled."""

    name: str
    hole: str
    expect: str
    got: str  # refused / warned / accepted / not run
    named: bool
    traceback: bool
    rc: int
    needles: list[str]
    excerpt: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.got in self.expect.split(" or ") and self.named and not self.traceback

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


# ---------------------------------------------------------------- spoiling files


def _npz_set(path: Path, key: str, index: tuple[int, ...], value: float) -> None:
    with np.load(path) as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays[key][index] = value
    np.savez(path, **arrays)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_jsonl(path: Path, line: int, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Apply ``edit`` to the record on 1-based ``line`` (a string it returns replaces the line)."""
    lines = path.read_text().splitlines()
    rec = json.loads(lines[line - 1])
    new = edit(rec)
    lines[line - 1] = new if isinstance(new, str) else json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")


def _edit_parquet(path: Path, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    rows = table.to_pylist()
    edit(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def _ann(root: Path, split: str = "train") -> Path:
    return root / "annotations" / f"fixture_{split}.jsonl"


def _rel(path: Path) -> str:
    """A file as any message names it: its folder and name."""
    return f"{path.parent.name}/{path.name}"


def _copy_run(ctx: Ctx, case_dir: Path) -> Path:
    run_dir = case_dir / "run"
    shutil.copytree(ctx.work / "train-base", run_dir, symlinks=True)
    return run_dir


def _store_cmd(ctx: Ctx, root: Path, *splits: str) -> list[str]:
    return masra("data", "build-store", *ctx.card(root), *[a for s in splits for a in ("-s", s)])


def _train(ctx: Ctx, root: Path, case_dir: Path, *extra: str) -> list[str]:
    cmd = train_cmd(ctx, case_dir / "run", *extra)
    return [a if a != f"card.root={ctx.fixture}" else f"card.root={root}" for a in cmd]


# ---------------------------------------------------------------- the cases


def nan_video_feature(ctx: Ctx, d: Path) -> Probe:
    path = d / "fx" / "features" / "appearance" / "fixture_train_0003.npz"
    _npz_set(path, "features", (3, 2), float("nan"))
    return Probe(_store_cmd(ctx, d / "fx", "train"), [_rel(path)])


def inf_text_feature(ctx: Ctx, d: Path) -> Probe:
    path = d / "fx" / "features" / "text" / "qid2.npz"
    _npz_set(path, "last_hidden_state", (1, 4), float("inf"))
    return Probe(_store_cmd(ctx, d / "fx", "train"), [_rel(path)])


def nan_features_without_store(ctx: Ctx, d: Path) -> Probe:
    """``masra predict --video-features``: one array per feature type of the card, one NaN in them."""
    feats = d / "fx" / "features"
    path = d / "features.npz"
    arrays = {}
    for kind in ("appearance", "motion"):
        with np.load(feats / kind / "fixture_val_0000.npz") as z:
            arrays[kind] = z["features"].copy()
    arrays["motion"][2, 1] = float("nan")
    np.savez(path, **arrays)
    cmd = masra(
        "predict", "--checkpoint", str(ctx.work / "train-base" / "best"), "--video-features", str(path)
    )
    return Probe([*cmd, "--query", "a red disc moves"], [str(path)])


def nan_prior_embedding(ctx: Ctx, d: Path) -> Probe:
    path = d / "fx" / "priors" / "reference" / "embeddings" / "minilm" / "shard-00000.parquet"

    def spoil(rows: list[dict[str, Any]]) -> None:
        rows[2]["caption_emb"][0][1] = float("nan")

    _edit_parquet(path, spoil)
    return Probe(_train(ctx, d / "fx", d), [_rel(path)])


def truncated_prior_embedding(ctx: Ctx, d: Path) -> Probe:
    path = d / "fx" / "priors" / "reference" / "embeddings" / "minilm" / "shard-00000.parquet"
    _truncate(path)
    return Probe(_train(ctx, d / "fx", d), [_rel(path)])


def prior_ids_mismatch(ctx: Ctx, d: Path) -> Probe:
    path = d / "fx" / "priors" / "reference" / "embeddings" / "minilm" / "shard-00000.parquet"

    def spoil(rows: list[dict[str, Any]]) -> None:
        rows[0]["video_id"] = "no_such_video"

    _edit_parquet(path, spoil)
    return Probe(_train(ctx, d / "fx", d), [_rel(path)])


def _stage1_copy(ctx: Ctx, d: Path) -> Path:
    run_dir = d / "s1"
    shutil.copytree(ctx.work / "s1-base", run_dir)
    return run_dir


def truncated_stage1_shard(ctx: Ctx, d: Path) -> Probe:
    run_dir = _stage1_copy(ctx, d)
    path = run_dir / "part-000of001-00001.parquet"
    _truncate(path)
    return Probe(stage1_cmd(ctx, run_dir), [_rel(path)])


def wrong_schema_stage1_shard(ctx: Ctx, d: Path) -> Probe:
    """The shard of fixture_train_0000 replaced by a Parquet file of other columns (same video id)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_dir = _stage1_copy(ctx, d)
    path = run_dir / "part-000of001-00000.parquet"
    vid = pq.read_table(path).column("video_id").to_pylist()[0]
    pq.write_table(pa.table({"video_id": [vid], "caption": ["a cat"]}), path)
    return Probe(stage1_cmd(ctx, run_dir), [_rel(path)])


def truncated_prior_shard_embed(ctx: Ctx, d: Path) -> Probe:
    path = d / "fx" / "priors" / "reference" / "shard-00000.parquet"
    _truncate(path)
    cmd = masra(
        "priors", "embed", *ctx.card(d / "fx"), "--priors-run", "reference", "--model", str(ctx.model)
    )
    return Probe(cmd, [_rel(path)])


def stale_lock_other_host(ctx: Ctx, d: Path) -> Probe:
    run_dir = d / "s1"
    run_dir.mkdir()
    lock = {"pid": 12345, "host": "some-other-node", "started": "2026-01-01T00:00:00+00:00", "argv": ["x"]}
    path = run_dir / "lock-000of001.json"
    path.write_text(json.dumps({**lock, "token": "t"}))
    return Probe(stage1_cmd(ctx, run_dir), [str(path), "some-other-node", "--break-lock"])


def empty_eval_split(ctx: Ctx, d: Path) -> Probe:
    path = _ann(d / "fx", "val")
    path.write_text("")
    return Probe(_train(ctx, d / "fx", d), [_rel(path)])


def duration_10x(ctx: Ctx, d: Path) -> Probe:
    path = _ann(d / "fx")
    for line in (1, 2):  # both queries of fixture_train_0000
        _edit_jsonl(path, line, lambda r: r.update(duration=r["duration"] * 10))
    cmd = masra("data", "stats", *ctx.card(d / "fx"), "-s", "train")
    return Probe(cmd, ["fixture_train_0000"], warn='"length_mismatch": 1')


def features_outrun_duration(ctx: Ctx, d: Path) -> Probe:
    """The first train video whose windows end over 2 clips before its features: its duration cut to
    just past its last window, so that its features outrun it."""
    root = d / "fx"
    path = _ann(root)
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for vid in dict.fromkeys(r["vid"] for r in recs):
        mine = [i for i, r in enumerate(recs, 1) if r["vid"] == vid]
        duration = float(int(max(w[1] for i in mine for w in recs[i - 1]["relevant_windows"])) + 1)
        with np.load(root / "features" / "appearance" / f"{vid}.npz") as z:
            clips = len(z["features"])
        if clips * 2.0 > duration + 2 * 2.0:
            break
    else:
        raise RuntimeError("no fixture train video has room after its last window")
    for line in mine:
        _edit_jsonl(path, line, lambda r: r.update(duration=duration))
    cmd = masra("data", "stats", *ctx.card(root), "-s", "train")
    return Probe(cmd, [vid], warn='"features_longer_than_duration": 1')


def vid_is_a_path(ctx: Ctx, d: Path) -> Probe:
    path = _ann(d / "fx")
    _edit_jsonl(path, 2, lambda r: r.update(vid="../../etc/passwd"))
    return Probe(_store_cmd(ctx, d / "fx", "train"), [f"{path.name}:2"])


def durations_vid_is_a_path(ctx: Ctx, d: Path) -> Probe:
    root = d / "fx"
    path = root / "annotations" / "fixture_durations.tsv"
    lines = path.read_text().splitlines()
    lines[2] = "/etc/passwd\t" + lines[2].split("\t", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    sets = ["format=charades_txt", "annotations.train=annotations/fixture_sta_train.txt"]
    sets += ["durations=annotations/fixture_durations.tsv"]
    cmd = masra("data", "stats", *ctx.card(root), *[a for s in sets for a in ("--set", s)], "-s", "train")
    return Probe(cmd, [f"{path.name}:3"])


def malformed_annotation_line(ctx: Ctx, d: Path) -> Probe:
    path = _ann(d / "fx")
    _edit_jsonl(path, 3, lambda r: '{"qid": 2, "query": "a red disc"')
    return Probe(_store_cmd(ctx, d / "fx", "train"), [f"{path.name}:3"])


def missing_feature_file(ctx: Ctx, d: Path) -> Probe:
    path = d / "fx" / "features" / "motion" / "fixture_train_0002.npz"
    path.unlink()
    return Probe(_store_cmd(ctx, d / "fx", "train"), [str(path.parent), path.stem])  # folder and vid


def wrong_feature_dim(ctx: Ctx, d: Path) -> Probe:
    path = d / "fx" / "features" / "appearance" / "fixture_train_0001.npz"
    with np.load(path) as z:
        x = z["features"][:, :15].copy()
    np.savez(path, features=x)
    return Probe(_store_cmd(ctx, d / "fx", "train"), [_rel(path)])


def truncated_feature_file(ctx: Ctx, d: Path) -> Probe:
    path = d / "fx" / "features" / "appearance" / "fixture_train_0005.npz"
    _truncate(path)
    return Probe(_store_cmd(ctx, d / "fx", "train"), [_rel(path)])


def _config(d: Path, text: str) -> Path:
    path = d / "config.yaml"
    path.write_text(text)
    return path


def config_bool_run_name(ctx: Ctx, d: Path) -> Probe:
    path = _config(d, "priors_run: true\n")
    return Probe(_train(ctx, d / "fx", d, "--config", str(path)), [str(path), "priors_run"])


def config_string_hidden_dim(ctx: Ctx, d: Path) -> Probe:
    path = _config(d, "model: {hidden_dim: '128'}\n")
    return Probe(_train(ctx, d / "fx", d, "--config", str(path)), [str(path), "model.hidden_dim"])


def resume_changed_lr(ctx: Ctx, d: Path) -> Probe:
    run_dir = _copy_run(ctx, d)
    cmd = train_cmd(ctx, run_dir, "--resume", "--set", "lr=0.001", "--set", "epochs=9")
    return Probe(cmd, [str(run_dir), "lr"])


def resume_changed_architecture(ctx: Ctx, d: Path) -> Probe:
    run_dir = _copy_run(ctx, d)
    cmd = train_cmd(ctx, run_dir, "--resume", "--set", "model.hidden_dim=64", "--set", "epochs=9")
    return Probe(cmd, [str(run_dir), "model.hidden_dim"])


def train_into_existing_run(ctx: Ctx, d: Path) -> Probe:
    run_dir = _copy_run(ctx, d)
    return Probe(train_cmd(ctx, run_dir), [str(run_dir), "--overwrite"])


def corrupt_checkpoint_resume(ctx: Ctx, d: Path) -> Probe:
    run_dir = _copy_run(ctx, d)
    path = (run_dir / "last").resolve() / "model.safetensors"
    _truncate(path)
    # Refusing, or going on from the previous checkpoint with a warning, will do: either names the file.
    return Probe(train_cmd(ctx, run_dir, "--resume", "--set", "epochs=9"), [_rel(path)], warn=_rel(path))


def corrupt_checkpoint_eval(ctx: Ctx, d: Path) -> Probe:
    run_dir = _copy_run(ctx, d)
    path = (run_dir / "best").resolve() / "model.safetensors"
    _truncate(path)
    cmd = masra("eval", "--checkpoint", str(run_dir / "best"), *ctx.card(), "--split", "val")
    return Probe(cmd, [_rel(path)])


def store_missing_split(ctx: Ctx, d: Path) -> Probe:
    store = d / "store-train-only"
    before = [[*_store_cmd(ctx, d / "fx", "train"), "--out", str(store)]]
    return Probe(_train(ctx, d / "fx", d, "--store", str(store)), [str(store), "val"], before=before)


def _import_line(vid: str, start: float = 1.0) -> dict[str, Any]:
    events = [{"start": start, "end": 8.0, "text": "a disc"}]
    return {"vid": vid, "duration": 62.0, "events": events, "clip_captions": ["a disc"] * 31}


def _import(ctx: Ctx, d: Path, lines: list[str]) -> Probe:
    path = d / "priors.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return Probe(
        masra("priors", "import", str(path), *ctx.card(d / "fx"), "--priors-run", "imported"),
        [f"{path.name}:2"],
    )


def import_malformed_line(ctx: Ctx, d: Path) -> Probe:
    return _import(ctx, d, [json.dumps(_import_line("fixture_train_0000")), '{"vid": "fixture_train_0001", '])


def import_vid_is_a_path(ctx: Ctx, d: Path) -> Probe:
    good, bad = _import_line("fixture_train_0000"), _import_line("../../etc/passwd")
    return _import(ctx, d, [json.dumps(good), json.dumps(bad)])


def import_nan_span(ctx: Ctx, d: Path) -> Probe:
    good, bad = _import_line("fixture_train_0000"), _import_line("fixture_train_0001", float("nan"))
    return _import(ctx, d, [json.dumps(good), json.dumps(bad)])


CASES: list[Case] = [
    Case("stage-1 lock of a writer on another host", "1", "refused", stale_lock_other_host),
    Case("NaN in a video feature file (build-store)", "2", "refused", nan_video_feature),
    Case("Inf in a text feature file (build-store)", "2", "refused", inf_text_feature),
    Case("NaN in a feature file read without a store (predict)", "2", "refused", nan_features_without_store),
    Case("NaN in a prior embedding (train)", "2", "refused", nan_prior_embedding),
    Case("train into an existing run without --overwrite", "3", "refused", train_into_existing_run),
    Case("--resume with another lr", "4", "refused", resume_changed_lr),
    Case("--resume with another model.hidden_dim", "4, 10", "refused", resume_changed_architecture),
    Case("empty eval split (train)", "6", "refused", empty_eval_split),
    Case("annotation duration 10x the features (data stats)", "6", "warned", duration_10x),
    Case("features longer than the annotation (data stats)", "6", "warned", features_outrun_duration),
    Case("vid that is a path (annotation jsonl)", "7", "refused", vid_is_a_path),
    Case("vid that is a path (durations tsv)", "7", "refused", durations_vid_is_a_path),
    Case("vid that is a path (priors import)", "7", "refused", import_vid_is_a_path),
    Case("--store missing the eval split (train)", "8", "refused", store_missing_split),
    Case("priors_run: true in a config (train)", "9", "refused", config_bool_run_name),
    Case("hidden_dim: '128' in a config (train)", "9, 10", "refused", config_string_hidden_dim),
    Case("truncated stage-1 shard (generate rerun)", "-", "refused", truncated_stage1_shard),
    Case("stage-1 shard with a wrong schema (generate rerun)", "-", "refused", wrong_schema_stage1_shard),
    Case("truncated prior shard (priors embed)", "-", "refused", truncated_prior_shard_embed),
    Case("truncated prior-embedding shard (train)", "-", "refused", truncated_prior_embedding),
    Case("prior embeddings with a video id not in the dataset (train)", "-", "refused", prior_ids_mismatch),
    Case("malformed annotation line (build-store)", "-", "refused", malformed_annotation_line),
    Case("missing feature file (build-store)", "-", "refused", missing_feature_file),
    Case("feature file of the wrong dim (build-store)", "-", "refused", wrong_feature_dim),
    Case("truncated feature file (build-store)", "-", "refused", truncated_feature_file),
    Case(
        "truncated checkpoint weights (train --resume)", "3", "refused or warned", corrupt_checkpoint_resume
    ),
    Case("truncated checkpoint weights (eval)", "3", "refused", corrupt_checkpoint_eval),
    Case("malformed line (priors import)", "-", "refused", import_malformed_line),
    Case("NaN event start (priors import)", "2", "refused", import_nan_span),
]


def feed(ctx: Ctx, case: Case) -> Outcome:
    """Run one case in its own folder under ``{work}/bad``."""
    d = ctx.work / "bad" / case.name.replace(" ", "_").replace("/", "_")
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    shutil.copytree(ctx.fixture, d / "fx", ignore=shutil.ignore_patterns("store"))
    t0 = time.monotonic()
    probe = case.make(ctx, d)
    for cmd in probe.before:
        pre = run(cmd, ctx.log)
        if pre.returncode != 0:
            return Outcome(case.name, case.hole, case.expect, "not run", False, False, pre.returncode,
                           probe.needles, f"set-up failed: {tail(pre, 600)}", time.monotonic() - t0)  # fmt: skip
    res: subprocess.CompletedProcess[str] = run(probe.cmd, ctx.log)
    text = res.stdout + res.stderr
    if res.returncode != 0:
        got = "refused"
    else:
        got = "warned" if probe.warn and probe.warn in text else "accepted"
    lines = [ln for ln in text.splitlines() if ln.strip() and "it/s]" not in ln and "video/s]" not in ln]
    return Outcome(
        name=case.name,
        hole=case.hole,
        expect=case.expect,
        got=got,
        named=all(n in text for n in probe.needles),
        traceback="Traceback (most recent call last)" in text,
        rc=res.returncode,
        needles=probe.needles,
        excerpt="\n".join(lines[-4:])[-600:],
        seconds=time.monotonic() - t0,
    )


def bad_inputs(ctx: Ctx, only: list[str] | None = None, jobs: int = 2) -> tuple[Row, list[Outcome]]:
    """Feed every case (or those whose name contains one of ``only``), ``jobs`` at a time (each case has
    its own folder); the row counts the inputs fed and those handled as the issue asks."""
    row = Row("bad inputs")
    t0 = time.monotonic()
    cases = [c for c in CASES if not only or any(o in c.name for o in only)]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        outcomes = list(pool.map(lambda c: feed(ctx, c), cases))
    for out in outcomes:
        row.faults += 1
        row.recovered += out.ok
        if not out.ok:
            row.failures.append(f"{out.name}: {out.got}, file named: {out.named}, traceback: {out.traceback}")
    row.seconds = time.monotonic() - t0
    return row, outcomes
