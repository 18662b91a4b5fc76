"""masra.hub: models by folder or cached hub id; an unreachable hub fails at once with one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from masra.hub import ModelUnavailableError, hub_reachable, looks_like_path, resolve_model

MISSING = "masra-tests/no-such-model"


def _closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_folder_and_file_are_returned_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "w.pyth").write_bytes(b"x")
    assert resolve_model(tmp_path / "m") == str(tmp_path / "m")
    assert resolve_model(str(tmp_path / "w.pyth")) == str(tmp_path / "w.pyth")


def test_path_like_names() -> None:
    assert looks_like_path("./models/clip") and looks_like_path("/abs/x") and looks_like_path("a/b/c")
    assert looks_like_path("SLOWFAST_8x8_R50.pyth")
    assert not looks_like_path("openai/clip-vit-base-patch32") and not looks_like_path("bert-base-uncased")


def test_missing_path_is_one_line_and_immediate(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="no such file or folder") as err:
        resolve_model(str(tmp_path / "nope" / "model"), what="test model")
    assert "\n" not in str(err.value) and "test model" in str(err.value)


def test_uncached_id_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as err:
        resolve_model(MISSING, what="CLIP model")
    assert time.perf_counter() - t0 < 2.0
    msg = str(err.value)
    assert "\n" not in msg and MISSING in msg and "HF_HUB_OFFLINE" in msg and "folder" in msg


def test_uncached_id_with_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert not hub_reachable()
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="cannot be reached"):
        resolve_model(MISSING)
    assert time.perf_counter() - t0 < 2.0


def test_cached_id_resolves_to_its_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An id in the local cache gives the snapshot folder (loads without touching the network)."""
    from huggingface_hub import constants

    repo = tmp_path / "models--masra-tests--cached"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Path(resolve_model("masra-tests/cached")) == snap


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    """`masra features extract` with a CLIP model that is nowhere: exit 1, one `Error:` line, in ~2 s."""
    root = tmp_path / "data"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "a.mp4").write_bytes(b"not a video")
    card = tmp_path / "card.yaml"
    card.write_text(
        f"name: t\nformat: qvhighlights\nroot: {root}\nannotations: {{}}\nclip_len: 2\nmax_clips: 8\n"
        f"video_features: {{clip: {{dir: clip, dim: 512, extractor: clip-vit-b32, model: {MISSING}}}}}\n"
        "text_features: {dir: text, dim: 384}\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "masra.pipelines", "features", "extract", "--dataset", str(card)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert res.returncode == 1, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and " INFO " not in ln]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and MISSING in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert elapsed < 5.0, f"took {elapsed:.1f} s (process start included)"
