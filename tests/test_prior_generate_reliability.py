"""Reliability of masra.prior_gen.generate: stage 1 under concurrent writers, killed runs and reruns
(issue 15, holes 1, 5 and 10).

One writer per part of a run folder (a lock naming its holder; stale locks are taken over or
refused with a way out), a cumulative and true manifest, leftover temporary files cleaned, shards
written with a normal file mode.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_prior_generate import BROKEN, GOOD, ScriptedEngine, generator, make_world

from masra.datasets.card import load_card
from masra.prior_gen.generate import RunLockedError, generate_priors, lock_path
from masra.prior_gen.runs import ShardSpec, videos_from_card
from masra.priors.schema import PRIOR_SCHEMA
from masra.priors.shards import read_shards

ALL = sorted({**GOOD, **BROKEN})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("world"))


def _items(world: Path) -> list:
    return videos_from_card(load_card(world), ["train"])


def _manifest(run: Path, tag: str = "000of001") -> dict:
    return json.loads((run / f"manifest-{tag}.json").read_text())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(run: Path, pid: int, host: str, tag: str = "000of001") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    path = run / f"lock-{tag}.json"
    body = {"pid": pid, "host": host, "started": "2026-01-01T00:00:00+00:00", "argv": ["x"], "token": "t"}
    path.write_text(json.dumps(body))
    return path


def test_second_writer_of_a_part_is_refused_naming_the_holder(world: Path, tmp_path: Path) -> None:
    items, run = _items(world), tmp_path / "run"
    refusals: list[str] = []

    class StartsASecondWriter(ScriptedEngine):
        def generate(self, requests, sampling):  # type: ignore[no-untyped-def]
            if self.calls == 0:  # the first writer holds the lock: a second one starts now
                with pytest.raises(RunLockedError) as e:
                    generate_priors(items, generator=generator(), engine_factory=ScriptedEngine, run_dir=run)
                refusals.append(str(e.value))
            return super().generate(requests, sampling)

    generate_priors(items, generator=generator(), engine_factory=StartsASecondWriter, run_dir=run)
    assert len(refusals) == 1
    msg = refusals[0]
    assert f"pid {os.getpid()} on host {socket.gethostname()} since 20" in msg and "part 000of001" in msg
    ids = read_shards(run, PRIOR_SCHEMA).column("video_id").to_pylist()
    assert sorted(ids) == ALL  # every video exactly once
    assert not lock_path(run, ShardSpec()).exists()  # released at the end
    # another part of the same folder is not blocked by this part's lock
    _write_lock(run, os.getpid(), socket.gethostname(), tag="000of002")
    generate_priors(
        items, generator=generator(), engine_factory=ScriptedEngine, run_dir=run, shard=ShardSpec(1, 2)
    )


_WRITER = """
import sys, time
from pathlib import Path
from test_prior_generate import ScriptedEngine, generator
from masra.datasets.card import load_card
from masra.prior_gen.generate import RunLockedError, generate_priors
from masra.prior_gen.runs import videos_from_card

class Slow(ScriptedEngine):
    def generate(self, requests, sampling):
        time.sleep(0.5)
        return super().generate(requests, sampling)

items = videos_from_card(load_card(Path(sys.argv[1])), ["train"])
try:
    generate_priors(items, generator=generator(), engine_factory=Slow, run_dir=Path(sys.argv[2]))
except RunLockedError as e:
    sys.exit(f"refused: {e}")
"""


def test_two_writer_processes_on_one_folder_write_each_video_once(world: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{Path(__file__).parent}{os.pathsep}{Path(__file__).parents[1]}"}
    cmd = [sys.executable, "-c", _WRITER, str(world), str(run)]
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    started = lambda: (run / "lock-000of001.json").exists() or any(run.glob("part-*.parquet"))  # noqa: E731
    while not started() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True, timeout=120)
    first_err = first.communicate(timeout=120)[1]
    assert first.returncode == 0, first_err
    assert (
        second.returncode != 0
        and f"is locked by pid {first.pid} on host {socket.gethostname()}" in second.stderr
    )
    ids = read_shards(run, PRIOR_SCHEMA).column("video_id").to_pylist()
    assert sorted(ids) == ALL


def test_stale_lock_of_a_dead_process_is_taken_over(
    world: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    pid = _dead_pid()
    _write_lock(run, pid, socket.gethostname())
    with caplog.at_level(logging.WARNING, logger="masra"):
        summary = generate_priors(
            _items(world), generator=generator(), engine_factory=ScriptedEngine, run_dir=run
        )
    assert summary.videos_done == len(ALL)
    assert f"taking over the stale lock {run / 'lock-000of001.json'} (pid {pid} on host" in caplog.text
    assert not (run / "lock-000of001.json").exists()


def test_lock_from_another_host_is_refused_until_broken(world: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    path = _write_lock(run, 12345, "some-other-node")
    with pytest.raises(RunLockedError) as e:
        generate_priors(_items(world), generator=generator(), engine_factory=ScriptedEngine, run_dir=run)
    msg = str(e.value)
    assert "pid 12345 on host some-other-node since 2026-01-01T00:00:00+00:00" in msg
    assert "--break-lock" in msg and f"delete {path}" in msg
    assert not list(run.glob("*.parquet"))
    summary = generate_priors(
        _items(world), generator=generator(), engine_factory=ScriptedEngine, run_dir=run, break_lock=True
    )
    assert summary.videos_done == len(ALL) and not path.exists()


def test_noop_rerun_keeps_the_manifest_true_and_appends(world: Path, tmp_path: Path) -> None:
    items, run = _items(world), tmp_path / "run"
    generate_priors(items, generator=generator(), engine_factory=ScriptedEngine, run_dir=run)

    def must_not_load() -> ScriptedEngine:
        raise AssertionError("a complete run must not load the engine")

    again = generate_priors(items, generator=generator(), engine_factory=must_not_load, run_dir=run)
    assert again.videos_done == 0
    m = _manifest(run)
    assert m["model_id"] == "scripted-model" and m["backend"] == "scripted"
    assert m["complete"] and m["videos_done"] == len(ALL) and m["videos_total"] == len(ALL)
    assert m["status_counts"] == {"ok": 3, "partial": 0, "failed": 3} and m["tokens_in"] > 0
    assert len(m["failure_reasons"]) == 3 and m["run_totals"]["rows"] == len(ALL)
    assert [i["rows_written"] for i in m["invocations"]] == [len(ALL), 0]
    assert m["invocations"][1]["model_id"] is None  # the rerun loaded no model, and says so


def test_limit_run_is_not_complete(world: Path, tmp_path: Path) -> None:
    items, run = _items(world), tmp_path / "run"
    generate_priors(items, generator=generator(), engine_factory=ScriptedEngine, run_dir=run, limit=2)
    m = _manifest(run)
    assert not m["complete"] and m["videos_done"] == 2 and m["videos_missing"] == len(ALL) - 2
    assert m["invocations"][0]["limit"] == 2
    generate_priors(items, generator=generator(), engine_factory=ScriptedEngine, run_dir=run)
    m = _manifest(run)
    assert m["complete"] and m["videos_done"] == len(ALL)
    assert [i["rows_written"] for i in m["invocations"]] == [2, len(ALL) - 2]


def test_cli_limit_run_is_not_complete(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import masra.prior_gen.engines as engines
    from masra.pipelines.cli import main

    monkeypatch.setattr(engines, "load_engine", lambda cfg: ScriptedEngine())
    (tmp_path / "model").mkdir()
    run = tmp_path / "run"
    args = ["priors", "generate", "--dataset", str(world), "--model", str(tmp_path / "model")]
    args += ["--prompt-family", "qwen2_5_vl", "--backend", "transformers", "--out", str(run)]
    res = CliRunner().invoke(main, [*args, "--limit", "2"])
    assert res.exit_code == 0, res.output
    m = _manifest(run)
    assert not m["complete"] and m["videos_done"] == 2 and m["videos_total"] == len(ALL)
    assert m["invocations"][0]["limit"] == 2
    _write_lock(run, 12345, "some-other-node")
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "is locked by pid 12345 on host some-other-node" in res.output
    res = CliRunner().invoke(main, [*args, "--break-lock"])
    assert res.exit_code == 0, res.output
    assert _manifest(run)["complete"]


def test_leftover_temp_files_are_cleaned_unless_a_live_writer_holds_them(world: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    mine = run / ".part-001of002-00000.parquet.abc123.tmp"
    orphan = run / ".part-000of003-00003.parquet.def456.tmp"  # its part has no lock: its writer is gone
    held = run / ".part-000of002-00001.parquet.ghi789.tmp"  # its part's writer is alive
    dead = run / ".part-002of003-00000.parquet.jkl000.tmp"  # its part's lock is stale
    for p in (mine, orphan, held, dead):
        p.write_bytes(b"partial")
    # The live writer is of the same sharding (N=2): a live writer of another one would be refused.
    _write_lock(run, os.getpid(), socket.gethostname(), tag="000of002")
    _write_lock(run, _dead_pid(), socket.gethostname(), tag="002of003")
    generate_priors(
        _items(world),
        generator=generator(),
        engine_factory=ScriptedEngine,
        run_dir=run,
        shard=ShardSpec(1, 2),
    )
    assert held.exists() and not mine.exists() and not orphan.exists() and not dead.exists()


def test_shards_have_a_normal_file_mode(world: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        generate_priors(_items(world), generator=generator(), engine_factory=ScriptedEngine, run_dir=tmp_path)
        os.umask(0o027)
        generate_priors(
            _items(world), generator=generator(), engine_factory=ScriptedEngine, run_dir=tmp_path / "r2"
        )
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("part-*.parquet")}
    assert modes == {0o644}
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "r2").glob("part-*.parquet")} == {0o640}


def test_a_live_writer_of_another_sharding_is_refused(world: Path, tmp_path: Path) -> None:
    """`--shard 0/3` while `--shard 0/2` runs on the same folder: their parts overlap, so refuse."""
    from masra.prior_gen.generate import ShardingConflictError

    run = tmp_path / "run"
    _write_lock(run, os.getpid(), socket.gethostname(), tag="000of002")  # a live writer of N=2
    with pytest.raises(ShardingConflictError, match=r"part 000of002 of another sharding.*--shard i/002"):
        generate_priors(
            _items(world),
            generator=generator(),
            engine_factory=ScriptedEngine,
            run_dir=run,
            shard=ShardSpec(0, 3),
        )
    assert not list(run.glob("part-*.parquet")) and not (run / "lock-000of003.json").exists()
    # The same sharding is fine (another part), and a dead writer of another sharding is no obstacle.
    generate_priors(
        _items(world),
        generator=generator(),
        engine_factory=ScriptedEngine,
        run_dir=run,
        shard=ShardSpec(1, 2),
    )
    _write_lock(run, _dead_pid(), socket.gethostname(), tag="000of002").replace(run / "lock-001of004.json")
    generate_priors(
        _items(world),
        generator=generator(),
        engine_factory=ScriptedEngine,
        run_dir=run,
        shard=ShardSpec(0, 3),
    )


def test_a_resharded_folder_keeps_every_video_once_and_its_manifests_true(
    world: Path, tmp_path: Path
) -> None:
    """One sharding after another: the later one skips what the earlier wrote and says it is complete."""
    run = tmp_path / "run"
    for i in range(2):
        generate_priors(
            _items(world),
            generator=generator(),
            engine_factory=ScriptedEngine,
            run_dir=run,
            shard=ShardSpec(i, 2),
        )

    def must_not_load() -> ScriptedEngine:
        raise AssertionError("every video already has a row")

    totals = 0
    for i in range(3):
        summary = generate_priors(
            _items(world),
            generator=generator(),
            engine_factory=must_not_load,
            run_dir=run,
            shard=ShardSpec(i, 3),
        )
        assert summary.videos_done == 0
        manifest = _manifest(run, f"{i:03d}of003")
        assert manifest["complete"] and manifest["videos_missing"] == 0
        assert manifest["videos_done"] == manifest["videos_total"]
        totals += manifest["videos_total"]
    assert totals == len(ALL)
    ids = read_shards(run, PRIOR_SCHEMA).column("video_id").to_pylist()
    assert sorted(ids) == ALL
