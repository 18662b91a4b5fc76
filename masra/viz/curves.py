"""Training curves of a run (``curves.png``): the total loss large, each named loss term in its own panel.

Layout (:func:`curves_figure`):

- top row: ``total loss`` (the weighted sum, log scale) and ``evaluation`` (metrics per epoch);
- one row per group of loss terms, one small panel per term (:func:`group_terms`):
  ``DETR`` (span L1, span GIoU, label: the matched-set terms), ``saliency`` (``loss_saliency_*``) and
  ``priors`` (everything else: ESTA, LRCA, SGE, ...). The auxiliary decoder layers' copies of a term
  (``loss_span_l1_0``, ``_1``, ...) are thin grey lines in the term's own panel.

A panel uses a log y axis when its values are all positive and span more than a factor of 10.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["CURVE_METRICS", "GROUPS", "curves_figure", "group_terms", "render_curves"]

CURVE_METRICS = ("MR-full-mAP", "MR-full-R1@0.5", "MR-full-R1@0.7", "HL-min-VeryGood-mAP")
DETR_TERMS = ("span_l1", "span_giou", "label")
GROUPS = ("DETR", "saliency", "priors")
_AUX = re.compile(r"^(?P<base>.+)_(?P<layer>\d+)$")


def group_terms(names: list[str] | set[str]) -> dict[str, dict[str, list[str]]]:
    """``loss_*`` keys -> ``{group: {term: [aux keys]}}`` (groups in :data:`GROUPS` order, empty ones left out).

    ``term`` is the key without ``loss_``; ``loss_span_l1_0`` is an auxiliary copy of ``span_l1`` when
    ``loss_span_l1`` is present. Example: ``["loss", "loss_label", "loss_label_0", "loss_sge"]`` ->
    ``{"DETR": {"label": ["loss_label_0"]}, "priors": {"sge": []}}``.
    """
    keys = {n for n in names if n.startswith("loss_")}
    terms: dict[str, list[str]] = {}
    for key in sorted(keys):
        m = _AUX.match(key)
        if m and m["base"] in keys:
            continue
        terms[key[len("loss_") :]] = []
    for key in sorted(keys):
        m = _AUX.match(key)
        if m and m["base"] in keys:
            terms[m["base"][len("loss_") :]].append(key)
    out: dict[str, dict[str, list[str]]] = {g: {} for g in GROUPS}
    order = {t: i for i, t in enumerate(DETR_TERMS)}
    for term, aux in sorted(terms.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
        group = "DETR" if term in DETR_TERMS else "saliency" if term.startswith("saliency") else "priors"
        out[group][term] = aux
    return {g: t for g, t in out.items() if t}


def _series(rows: list[dict[str, Any]], key: str, x: str) -> tuple[list[float], list[float]]:
    pts = [(r[x], r[key]) for r in rows if isinstance(r.get(key), int | float)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _scale(ax: Any, ys: list[float]) -> None:
    if ys and min(ys) > 0 and max(ys) > 10 * min(ys):
        ax.set_yscale("log")


def curves_figure(train_log: list[dict[str, Any]], metrics_log: list[dict[str, Any]]) -> Any:
    """The matplotlib Figure described in the module doc, or None without any data.

    ``train_log``: the trainer's ``train_log.jsonl`` rows (``step``, ``loss``, ``loss_*``; interval rows
    are used, the per-epoch rows only when there are fewer than 2 interval rows); ``metrics_log``:
    ``metrics.jsonl`` rows (``epoch`` and the metrics).
    """
    steps = [r for r in train_log if not r.get("epoch_end")]
    if len(steps) < 2:
        steps = [r for r in train_log if r.get("epoch_end")]
    if not steps and not metrics_log:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_terms({k for r in steps for k in r})
    cols = max([4, *(len(t) for t in groups.values())])
    fig = plt.figure(figsize=(2.9 * cols, 3.2 + 2.2 * len(groups)))
    grid = fig.add_gridspec(1 + len(groups), cols, height_ratios=[1.6] + [1.0] * len(groups))
    half = cols // 2
    ax_total = fig.add_subplot(grid[0, :half])
    xs, ys = _series(steps, "loss", "step")
    ax_total.plot(xs, ys, lw=2, marker="o", ms=2, color="black")
    _scale(ax_total, ys)
    ax_total.set(title="total loss (weighted sum)", xlabel="step")
    ax_met = fig.add_subplot(grid[0, half:])
    for key in CURVE_METRICS:
        mx, my = _series(metrics_log, key, "epoch")
        if mx:
            ax_met.plot(mx, my, marker="o", ms=3, label=key)
    ax_met.set(title="evaluation", xlabel="epoch")
    if metrics_log:
        ax_met.legend(fontsize=7, frameon=False)
    for row, (group, terms) in enumerate(groups.items(), start=1):
        for col, (term, aux) in enumerate(terms.items()):
            ax = fig.add_subplot(grid[row, col])
            values: list[float] = []
            for key in aux:
                ax_x, ax_y = _series(steps, key, "step")
                ax.plot(ax_x, ax_y, lw=0.7, color="0.65")
                values += ax_y
            tx, ty = _series(steps, f"loss_{term}", "step")
            ax.plot(tx, ty, lw=1.4, color=f"C{row - 1}")
            _scale(ax, values + ty)
            ax.set_title(f"{group}: {term}" + (f" (+{len(aux)} aux)" if aux else ""), fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def render_curves(
    train_log: list[dict[str, Any]], metrics_log: list[dict[str, Any]], path: Path
) -> Path | None:
    """Write :func:`curves_figure` to ``path`` (PNG); None without any data."""
    fig = curves_figure(train_log, metrics_log)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
