"""The tiny random Qwen2.5-VL end to end through each backend, through the real CLI, on CPU.

The model is built here (scripts/build_tiny_models.py, ~10 s, no download). Its output is noise, so
the test checks the plumbing and the contract (rows for every video, statuses and reasons, token
counts, provenance, resume, embed and report), not the content. The vLLM run goes through the real
CLI in a subprocess, because the engine spawns processes (vllm-cpu on CPU; ~20-70 s to start).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_prior_generate import BROKEN, GOOD, make_world

from masra.pipelines.cli import main
from masra.priors.schema import EMBED_SCHEMA, PRIOR_SCHEMA
from masra.priors.shards import read_shards

REPO = Path(__file__).resolve().parents[1]
TINY_SETTINGS = {
    "max_side": 56,
    "max_frames": 4,
    "max_model_len": 2048,
    "batch_videos": 3,
    "event_max_tokens": 24,
    "caption_max_tokens": 8,
    "vllm_options": {"skip_mm_profiling": True, "enforce_eager": True, "max_num_seqs": 16},
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.spec_from_file_location(
        "build_tiny_models", REPO / "scripts" / "build_tiny_models.py"
    )
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    out = tmp_path_factory.mktemp("tiny_models")
    builder.main(["--out", str(out), "--models", "qwen2_5_vl", "qwen3_vl"])
    assert builder.is_complete(out / "qwen2_5_vl") and builder.is_complete(out / "qwen3_vl")
    return out


@pytest.fixture(scope="module")
def tiny_model(tiny_models: Path) -> Path:
    return tiny_models / "qwen2_5_vl"


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    return make_world(tmp_path_factory.mktemp("e2e"), priors={"model": str(tiny_model), **TINY_SETTINGS})


def check_run(run_dir: Path, backend: str) -> list[dict]:
    rows = read_shards(run_dir, PRIOR_SCHEMA).to_pylist()
    assert sorted(r["video_id"] for r in rows) == sorted({**GOOD, **BROKEN})
    for r in rows:
        assert r["status"] in ("ok", "partial", "failed") and r["backend"] == backend
        assert len(r["clip_captions"]) == r["num_clips"]
        if r["status"] != "ok":
            assert r["error"]
        if r["video_id"] in GOOD:
            assert (
                r["tokens_in"] > 0 and r["tokens_out"] > 0 and r["frames_sampled"] == 4 + 2 * r["num_clips"]
            )
            assert r["model_revision"].startswith("local-")
        else:
            assert r["status"] == "failed" and r["tokens_in"] == 0
    manifest = json.loads((run_dir / "manifest-000of001.json").read_text())
    assert manifest["complete"] and manifest["backend"] == backend and manifest["videos_done"] == len(rows)
    return rows


@pytest.fixture(scope="module")
def transformers_run(card: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    run_dir = tmp_path_factory.mktemp("run_tf")
    args = ["priors", "generate", "--dataset", str(card), "--backend", "transformers", "--out", str(run_dir)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "6 videos (0 already done)" in res.output
    return run_dir, args


def test_transformers_backend_cli(card: Path, transformers_run: tuple[Path, list[str]]) -> None:
    run_dir, args = transformers_run
    check_run(run_dir, "transformers")
    runner = CliRunner()
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "0 videos (6 already done)" in again.output

    res = runner.invoke(main, ["priors", "embed", "--dataset", str(card), "--priors-run", str(run_dir)])
    assert res.exit_code == 0, res.output
    emb = read_shards(run_dir / "embeddings" / "minilm", EMBED_SCHEMA).to_pylist()
    assert len(emb) == 6 and all(e["dim"] == 384 for e in emb)
    for e in emb:
        assert np.asarray(e["caption_emb"]).shape == (e["num_clips"], 384)
        assert len(e["caption_valid"]) == e["num_clips"]

    res = runner.invoke(main, ["priors", "report", "--dataset", str(card), "--priors-run", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "recall@IoU0.5" in res.output
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["videos"]["with_priors"] == 6 and rep["recall"]["windows"] == 7
    assert rep["videos"]["failure_reasons"]["video file not found"] == 1


def test_vllm_backend_cli(card: Path, tmp_path: Path, transformers_run: tuple[Path, list[str]]) -> None:
    pytest.importorskip("vllm")
    run_dir = tmp_path / "run_vllm"
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "masra.pipelines", "priors", "generate", "--dataset", str(card)]
    cmd += ["--backend", "vllm", "--out", str(run_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = check_run(run_dir, "vllm")
    good = [r for r in rows if r["video_id"] in GOOD]
    # structured output: the event request is grammar-constrained JSON, never an unparsable answer
    assert all("no JSON event list" not in (r["error"] or "") for r in good), [r["error"] for r in good]
    # both backends see the same prompts and frames: the same prompt token counts per video
    tf_rows = {r["video_id"]: r for r in read_shards(transformers_run[0], PRIOR_SCHEMA).to_pylist()}
    assert {r["video_id"]: r["tokens_in"] for r in rows} == {v: r["tokens_in"] for v, r in tf_rows.items()}


@pytest.mark.slow
def test_qwen3_vl_through_vllm_cli(card: Path, tiny_models: Path, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    run_dir = tmp_path / "run_q3"
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "masra.pipelines", "priors", "generate", "--dataset", str(card)]
    cmd += ["--backend", "vllm", "--model", str(tiny_models / "qwen3_vl"), "--out", str(run_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = check_run(run_dir, "vllm")
    from masra.prior_gen import prompts

    assert {r["prompt_version"] for r in rows} == {prompts.prompt_version(prompts.FAMILIES["qwen3_vl"])}


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """Importing vllm sets a few process-wide variables (TORCHINDUCTOR_*, KMP_*); undo them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_vllm_request_building(restore_environ: None) -> None:
    pytest.importorskip("vllm")
    from vllm.sampling_params import StructuredOutputsParams

    from masra.prior_gen import prompts
    from masra.prior_gen.engines.base import GenRequest, SamplingConfig
    from masra.prior_gen.engines.vllm_engine import build_prompt, build_sampling_params

    schema = prompts.events_schema(30.0, 8)
    req = GenRequest(
        ("v", "events", 0),
        prompts.FAMILIES["qwen2_5_vl"].render(prompts.SYSTEM, prompts.events_text(30.0, 4, 8)),
        np.zeros((4, 28, 28, 3), np.uint8),
        np.array([1.0, 2.0, 3.0, 4.0]),
        64,
        schema,
    )
    sp = build_sampling_params(req, SamplingConfig())
    assert sp.max_tokens == 64 and sp.temperature == 0.0
    assert isinstance(sp.structured_outputs, StructuredOutputsParams) and sp.structured_outputs.json == schema
    prompt = build_prompt(req)
    assert prompt["prompt"].count("<|video_pad|>") == 1
    frames, meta = prompt["multi_modal_data"]["video"][0]
    assert frames.shape == (4, 28, 28, 3) and meta["fps"] == 1.0 and meta["total_num_frames"] == 4


def test_qwen3_vl_family_through_transformers(tiny_models: Path) -> None:
    from masra.prior_gen import prompts
    from masra.prior_gen.engines import EngineConfig, load_engine
    from masra.prior_gen.engines.base import GenRequest, SamplingConfig
    from masra.prior_gen.engines.transformers_engine import video_metadata

    model = str(tiny_models / "qwen3_vl")
    fam = prompts.resolve_family(model)
    assert fam.name == "qwen3_vl"
    engine = load_engine(EngineConfig(model=model, backend="transformers"))
    req = GenRequest(
        ("v", "events", 0),
        fam.render(prompts.SYSTEM, prompts.events_text(4.0, 4, 4)),
        np.zeros((4, 64, 64, 3), np.uint8),
        np.array([0.5, 1.5, 2.5, 3.5]),
        4,
        None,
    )
    # Qwen3-VL writes frame timestamps into the prompt from the metadata (1 fps here: groups of 2)
    inputs = engine.processor(
        text=[req.prompt],
        videos=[req.frames],
        videos_kwargs={"video_metadata": [video_metadata(req)], "do_sample_frames": False},
    )
    text = engine.processor.tokenizer.decode(inputs["input_ids"][0])
    assert "<0.5 seconds>" in text and "<2.5 seconds>" in text
    [res] = engine.generate([req], SamplingConfig())
    assert res.error is None and res.tokens_in == len(inputs["input_ids"][0]) and res.tokens_out == 4
