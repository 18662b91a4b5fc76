"""The Gradio page of ``masra app``: a checkpoint folder, a video, a query; the timeline and the windows.

Layout: on the left the checkpoint folder (a path on the machine running the app), the video
(dropped or chosen), the query and the number of windows; on the right a one-line summary, the
timeline PNG (:mod:`masra.viz.timeline`: top windows with scores above the saliency curve) and the
windows as a table (rank, start, end, score; the numbers ``masra predict`` prints). The computation
is :func:`masra.app.predict.predict_for_app`; its one-line errors are shown as Gradio errors.

Gradio is imported only when the page is built (``masra --help`` stays fast); analytics are off.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from masra.app.predict import TABLE_HEADERS, AppError, predict_for_app

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["ELEM_IDS", "build_app", "launch"]

# elem_id of each component (the browser test finds them by these)
ELEM_IDS = {
    "checkpoint": "masra-checkpoint",
    "video": "masra-video",
    "query": "masra-query",
    "top_k": "masra-top-k",
    "run": "masra-run",
    "summary": "masra-summary",
    "timeline": "masra-timeline",
    "windows": "masra-windows",
}


def _import_gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio

    return gradio


def build_app(checkpoint: str | None = None, *, top_k: int = 5, device: str = "cpu") -> gr.Blocks:
    """The page, not yet launched; ``checkpoint`` pre-fills the checkpoint field."""
    gr = _import_gradio()
    import pandas as pd

    def run(ckpt: str, video: str | None, query: str, k: float) -> tuple[str, str, Any]:
        try:
            res = predict_for_app(ckpt, video, query, top_k=int(k), device=device)
        except AppError as e:
            raise gr.Error(str(e)) from None
        return res.summary, str(res.timeline), pd.DataFrame(res.rows, columns=TABLE_HEADERS)

    with gr.Blocks(title="masra: video temporal grounding") as demo:
        gr.Markdown(
            "## masra: find a moment in a video\n"
            "Choose a checkpoint folder, drop a video, type what happens; the model returns its top "
            "windows and a per-clip saliency curve."
        )
        with gr.Row():
            with gr.Column(scale=1):
                ckpt = gr.Textbox(
                    label="Checkpoint folder", value=checkpoint or "", elem_id=ELEM_IDS["checkpoint"]
                )
                video = gr.Video(label="Video", sources=["upload"], format=None, elem_id=ELEM_IDS["video"])
                query = gr.Textbox(
                    label="Query", placeholder="a red circle moves to the right", elem_id=ELEM_IDS["query"]
                )
                k = gr.Slider(1, 20, value=top_k, step=1, label="Top windows", elem_id=ELEM_IDS["top_k"])
                button = gr.Button("Ground", variant="primary", elem_id=ELEM_IDS["run"])
            with gr.Column(scale=2):
                summary = gr.Markdown(elem_id=ELEM_IDS["summary"])
                timeline = gr.Image(label="Timeline", type="filepath", elem_id=ELEM_IDS["timeline"])
                table = gr.Dataframe(
                    headers=TABLE_HEADERS,
                    label="Top windows",
                    interactive=False,
                    elem_id=ELEM_IDS["windows"],
                )
        button.click(run, [ckpt, video, query, k], [summary, timeline, table])
        query.submit(run, [ckpt, video, query, k], [summary, timeline, table])
    demo.queue(default_concurrency_limit=1)
    return demo  # type: ignore[no-any-return]


def launch(
    checkpoint: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    top_k: int = 5,
    device: str = "cpu",
) -> None:
    """Build the page and serve it until interrupted (loopback by default; never a public share link)."""
    demo = build_app(checkpoint, top_k=top_k, device=device)
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True)
