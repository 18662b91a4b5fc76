"""`masra app`: serve the web demo (Gradio) on this machine.

Example::

    masra app --checkpoint runs/fixture/best          # then open http://127.0.0.1:7860

Needs the ``app`` extra (``pip install 'masra[app]'``); without Gradio the command says so in one
line. Gradio is imported only when the command runs, so ``masra --help`` stays fast.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

GRADIO_MISSING = (
    "masra app needs gradio, which is not installed: pip install 'masra[app]' "
    "(or, in a checkout, .venv/bin/pip install 'gradio>=5,<7')"
)


def gradio_available() -> bool:
    """Whether ``import gradio`` can succeed (without importing it)."""
    return importlib.util.find_spec("gradio") is not None


@click.command("app")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Checkpoint folder pre-filled on the page (any folder can be typed there).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to serve on (loopback by default)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port.")
@click.option(
    "--top-k", type=click.IntRange(1, 20), default=5, show_default=True, help="Windows shown by default."
)
@click.option("--device", default="cpu", show_default=True, help="Torch device (model and extractors).")
def app_command(checkpoint: Path | None, host: str, port: int, top_k: int, device: str) -> None:
    """Web demo: choose a checkpoint, drop a video, type a query; see the timeline and the top windows."""
    if not gradio_available():
        raise click.ClickException(GRADIO_MISSING)
    from masra.app.ui import launch

    click.echo(f"masra app on http://{host}:{port}  (Ctrl+C stops it)")
    launch(str(checkpoint) if checkpoint else None, host=host, port=port, top_k=top_k, device=device)


COMMANDS: list[click.Command] = [app_command]
