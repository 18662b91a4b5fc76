"""`masra app`: its predict function (fast, no browser) and the page in headless Chromium (slow).

Both on a small fixture with a tiny checkpoint trained here: the windows the app computes, and the
windows the page shows after a fixture mp4 and a query are submitted, equal `masra predict --video`'s.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _fixture_ckpt import build_fixture_checkpoint
from click.testing import CliRunner

from masra.app.predict import TABLE_HEADERS, AppError, predict_for_app
from masra.pipelines import cli_app
from masra.pipelines.cli import main

QUERY = "a red circle moves to the right"
VID = "fixture_val_0000"
HAS_GRADIO = importlib.util.find_spec("gradio") is not None


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(fixture root, best checkpoint)."""
    return build_fixture_checkpoint(tmp_path_factory.mktemp("app"), train_videos=4, val_videos=1)


def _cli_windows(ckpt: Path, mp4: Path, top_k: int = 5) -> list[list[float]]:
    args = ["predict", "--checkpoint", str(ckpt), "--video", str(mp4), "--query", QUERY, "--json"]
    res = CliRunner().invoke(main, [*args, "--top-k", str(top_k)])
    assert res.exit_code == 0, res.output
    [row] = [line[line.index("{") :] for line in res.output.splitlines() if '"pred_relevant_windows"' in line]
    windows: list[list[float]] = json.loads(row)["pred_relevant_windows"]
    return windows


def test_app_predict_equals_masra_predict(fixture_run: tuple[Path, Path], tmp_path: Path) -> None:
    root, ckpt = fixture_run
    mp4 = root / "videos" / f"{VID}.mp4"
    res = predict_for_app(ckpt, mp4, f"  {QUERY} ", top_k=3, out_dir=tmp_path)
    assert res.windows == _cli_windows(ckpt, mp4, top_k=3)
    assert len(res.windows) == 3 and res.rows == [[i + 1, *w] for i, w in enumerate(res.windows)]
    assert len(TABLE_HEADERS) == len(res.rows[0])
    assert res.timeline == tmp_path / "timeline.png" and res.timeline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.num_clips == round(res.duration / 2.0) and res.num_windows == 1
    assert f"{res.num_clips} clips" in res.summary and f"{VID}.mp4" in res.summary


def test_app_errors_are_one_line(fixture_run: tuple[Path, Path], tmp_path: Path) -> None:
    root, ckpt = fixture_run
    mp4 = root / "videos" / f"{VID}.mp4"
    with pytest.raises(AppError, match="type a query"):
        predict_for_app(ckpt, mp4, "   ")
    with pytest.raises(AppError, match="drop a video"):
        predict_for_app(ckpt, None, QUERY)
    with pytest.raises(AppError, match="not a checkpoint folder"):
        predict_for_app(tmp_path, mp4, QUERY)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00junk" * 50)
    with pytest.raises(AppError) as err:
        predict_for_app(ckpt, bad, QUERY)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_app_without_gradio_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_app, "gradio_available", lambda: False)
    res = CliRunner().invoke(main, ["app", "--port", "1"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [f"Error: {cli_app.GRADIO_MISSING}"]


@pytest.mark.skipif(not HAS_GRADIO, reason="gradio is not installed (pip install 'masra[app]')")
def test_the_page_builds(fixture_run: tuple[Path, Path]) -> None:
    from masra.app.ui import ELEM_IDS, build_app

    demo = build_app(str(fixture_run[1]))
    config = json.dumps(demo.get_config_file())
    for elem_id in ELEM_IDS.values():
        assert f'"{elem_id}"' in config, elem_id


# ---- the page in a real headless browser (slow) ------------------------------------------------


def _chromium() -> str | None:
    found = os.environ.get("MASRA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return found if found and Path(found).exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _browser_skip_reason() -> str | None:
    if not HAS_GRADIO:
        return "gradio is not installed (pip install 'masra[app]')"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is not installed (pip install playwright; it drives system Chromium)"
    if _chromium() is None:
        return "no chromium on PATH (apt-get install -y chromium, or set MASRA_CHROMIUM)"
    return None


def _table_windows(text: str) -> list[list[float]]:
    """Rows (rank, start, end, score) read from the table's visible text -> [[start, end, score], ...]."""
    text = text.split("score", 1)[1] if "score" in text else ""  # the cells follow the last header
    numbers = [float(t) for t in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]
    assert len(numbers) % 4 == 0, text
    rows = [numbers[i : i + 4] for i in range(0, len(numbers), 4)]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1)), text
    return [r[1:] for r in rows]


@pytest.mark.slow
@pytest.mark.skipif(_browser_skip_reason() is not None, reason=str(_browser_skip_reason()))
def test_the_page_in_headless_chromium(fixture_run: tuple[Path, Path], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from masra.app.ui import ELEM_IDS

    root, ckpt = fixture_run
    mp4 = root / "videos" / f"{VID}.mp4"
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "masra.pipelines", "app", "--checkpoint", str(ckpt), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the app did not answer within 120 s"
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(url)
                page.locator(f"#{ELEM_IDS['video']} input[type=file]").set_input_files(str(mp4))
                page.locator(f"#{ELEM_IDS['query']} textarea").fill(QUERY)
                page.locator(f"#{ELEM_IDS['video']} video").wait_for(timeout=60_000)  # upload finished
                page.locator(f"#{ELEM_IDS['run']}").click()
                page.locator(f"#{ELEM_IDS['summary']}", has_text="model pass").wait_for(timeout=120_000)
                summary = page.locator(f"#{ELEM_IDS['summary']}").inner_text()
                table, deadline = "", time.monotonic() + 60
                while not _table_windows(table) and time.monotonic() < deadline:  # rows render after
                    page.wait_for_timeout(250)
                    table = page.locator(f"#{ELEM_IDS['windows']}").inner_text()
                timeline = page.locator(f"#{ELEM_IDS['timeline']} img").first.get_attribute("src")
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    shown = _table_windows(table)
    assert shown == _cli_windows(ckpt, mp4)
    assert f"{VID}.mp4" in summary and "clips" in summary
    assert timeline and "timeline" in timeline
