"""The rehearsal's report: per step its time, exit status and what it cut, refitted or skipped.

Counts are read from what the commands wrote, not recomputed: the import manifest
(``captions_refitted``, ``rows_refused``), the generate manifest's last invocation (videos skipped
because an imported row existed, rows written, statuses), the training run's ``summary.json``
(``data.train`` / ``data.eval``: the split reports of ``masra.grounding.data.report.SplitReport``:
videos cut at ``max_clips``, windows dropped or clipped, prior clip counts fitted, ...), the eval
metrics files, and for a failed step the error lines of its log. ``rehearsal.json`` holds it all;
``rehearsal.md`` is the short version.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from .sources import Source
from .steps import Step
from .world import World

EMBED_LINE = re.compile(r"(\d+) shards written, (\d+) already up to date")
# How a step that needs weights this machine does not have is marked skipped (rehearsal.run.blocked).
OFFLINE = "not available offline"
# The one failure the rehearsal is meant to catch until the clip-grid rule of both stages agrees.
CLIP_COUNT_ERROR = re.compile(
    r"(\d+) videos have priors for another clip count than their features: ([^\n]*)"
)


def load_average() -> str:
    """``uptime``'s 1 / 5 / 15-minute load averages."""
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def split_report(value: Any) -> dict[str, Any] | None:
    """A ``summary.json`` split report as a dict (newer runs write a dict, older ones ``k=v, ...``)."""
    if value is None or isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for part in str(value).split(", "):
        k, _, v = part.partition("=")
        out[k] = int(v) if v.lstrip("-").isdigit() else v
    return out


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def import_counts(step: Step, run_dir: Path, info: dict[str, Any]) -> None:
    man = _json(run_dir / "manifest.json") or {}
    imp = man.get("import") or {}
    step.counts = {
        "rows_in_file": info.get("rows"),
        "rows_written": (man.get("counts") or {}).get("videos"),
        "rows_refused": imp.get("rows_refused"),
        "captions_refitted": imp.get("captions_refitted"),
        "caption_counts_in_file": info.get("caption_counts"),
    }


def generate_counts(step: Step, run_dir: Path) -> None:
    man = _json(run_dir / "manifest-000of001.json") or {}
    last = (man.get("invocations") or [{}])[-1]
    step.counts = {
        "videos_in_split": last.get("videos_total"),
        "videos_skipped_already_imported": last.get("videos_skipped"),
        "videos_generated": last.get("rows_written"),
        "status_counts": last.get("status_counts"),
        "failure_reasons": last.get("failure_reasons"),
        "run_sources": _sources(run_dir),
    }
    text = step.output()
    gen = re.search(r"wall ([\d.]+) s \(", text)
    step.counts["generate_seconds"] = float(gen.group(1)) if gen else None
    step.counts["embed_seconds"] = phase_seconds(text, "embedding ", "embeddings in ")
    emb = EMBED_LINE.findall(text)
    if emb:
        step.counts["embed_shards_written"] = int(emb[-1][0])


def _sources(run_dir: Path) -> dict[str, int]:
    try:
        import pyarrow.parquet as pq

        from masra.priors.shards import shard_paths
    except ImportError:
        return {}
    out: dict[str, int] = {}
    for p in shard_paths(run_dir):
        for s in pq.read_table(p, columns=["source"]).column("source").to_pylist():
            out[str(s)] = out.get(str(s), 0) + 1
    return out


def embed_counts(step: Step) -> None:
    m = EMBED_LINE.findall(step.output())
    if m:
        step.counts = {"shards_written": int(m[-1][0]), "shards_up_to_date": int(m[-1][1])}


def phase_seconds(text: str, start: str, end: str) -> float | None:
    """Seconds between the first log line holding ``start`` and the last holding ``end`` (``HH:MM:SS``
    stamps of masra's log lines; None when either is missing)."""
    stamps = [
        (m.group(2), m.group(1)) for m in re.finditer(r"^(\d\d:\d\d:\d\d) \w+ [\w.]+: (.*)$", text, re.M)
    ]
    t0 = next((t for msg, t in stamps if start in msg), None)
    t1 = next((t for msg, t in reversed(stamps) if end in msg), None)
    if t0 is None or t1 is None:
        return None
    secs = [sum(int(x) * f for x, f in zip(t.split(":"), (3600, 60, 1), strict=True)) for t in (t0, t1)]
    return float((secs[1] - secs[0]) % 86400)


def train_counts(step: Step, train_run: Path) -> None:
    summary = _json(train_run / "summary.json") if step.ok else None
    if summary:
        data = summary.get("data") or {}
        step.counts = {
            "train": split_report(data.get("train")),
            "eval": split_report(data.get("eval")),
            "priors": summary.get("priors"),
            "epochs_done": summary.get("epochs_done"),
            "best": {summary.get("best_metric"): summary.get("best_value")},
        }
    m = CLIP_COUNT_ERROR.search(step.output())
    if m:
        step.counts["videos_with_priors_for_another_clip_count"] = int(m.group(1))
        step.notes.append(
            f"{m.group(1)} videos have priors for another clip count than their features: {m.group(2)}"
        )
    warn = [
        ln.strip()
        for ln in step.output().splitlines()
        if "WARNING" in ln and ("clip" in ln or "feature" in ln)
    ]
    step.notes += warn[:6]


def eval_counts(step: Step) -> None:
    m = re.search(r"metrics written to (\S+)", step.output())
    metrics = _json(Path(m.group(1))) if m else None
    if metrics:
        brief = metrics.get("brief") or metrics
        keep = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "HL-min-VeryGood-mAP")
        step.counts = {k: brief[k] for k in keep if k in brief}
    n = re.search(r"(\d+) predictions written", step.output())
    if n:
        step.counts["predictions"] = int(n.group(1))


def predict_counts(step: Step) -> None:
    rows = []
    for ln in step.output().splitlines():
        if ln.startswith("{"):
            try:
                rows.append(json.loads(ln))
            except ValueError:
                continue
    if rows:
        step.counts = {"queries": len(rows), "windows": len(rows[0].get("pred_relevant_windows") or [])}


def build(
    *,
    opt: dict[str, Any],
    source: Source,
    world: World,
    steps: list[Step],
    run_dir: Path,
    train_run: Path,
    import_info: dict[str, Any],
    findings: list[str],
    seconds: float,
) -> dict[str, Any]:
    """Fill each step's counts and return the report."""
    for s in steps:
        if s.skipped:
            continue
        if s.name == "priors-import":
            import_counts(s, run_dir, import_info)
        elif s.name == "make-priors":
            generate_counts(s, run_dir)
        elif s.name == "priors-embed":
            embed_counts(s)
        elif s.name == "train":
            train_counts(s, train_run)
        elif s.name.startswith("eval-"):
            eval_counts(s)
        elif s.name.startswith("predict"):
            predict_counts(s)
    failed = [s.name for s in steps if not s.ok and not (s.skipped or "").startswith(OFFLINE)]
    return {
        "dataset": source.dataset,
        "annotations": {"kind": source.kind, "root": str(source.root), "reader_notes": source.notes},
        "options": opt,
        "card": str(world.card_path),
        "prior_run": str(run_dir),
        "ok": not failed,
        "failed_steps": failed,
        "findings": findings,
        "steps": [s.as_dict() for s in steps],
        "seconds": round(seconds, 1),
        "finished_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_end": load_average(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }


def _cell(d: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, dict):
            # counts of 0 say nothing here; a metric of 0.0 does
            inner = {
                k: x
                for k, x in v.items()
                if not str(k).endswith("_ids") and x not in (None, [], {}) and not (type(x) is int and x == 0)
            }
            return "{" + ", ".join(f"{k} {fmt(x)}" for k, x in inner.items()) + "}"
        return str(v)

    return "; ".join(f"{k}: {fmt(v)}" for k, v in d.items() if v not in (None, {}, []))


def markdown(rep: dict[str, Any]) -> str:
    """The short report: one table row per step, the findings and the failures' reasons."""
    lines = [
        f"# Dress rehearsal: {rep['dataset']}",
        "",
        f"{'All steps succeeded' if rep['ok'] else 'FAILED: ' + ', '.join(rep['failed_steps'])}; "
        f"{rep['seconds']:.0f} s in all, finished {rep['finished_at']} (load {rep['load_average_at_end']}, "
        f"{rep['machine']}). Annotations: {rep['annotations']['kind']} ({rep['annotations']['root']}); "
        f"card {rep['card']}.",
        "",
        "| step | result | seconds | peak MB | cut / refitted / skipped |",
        "|---|---|---|---|---|",
    ]
    for s in rep["steps"]:
        result = (
            "skipped: " + s["skipped"]
            if s["skipped"]
            else ("ok" if s["ok"] else f"FAILED (rc {s['returncode']})")
        )
        lines.append(
            f"| {s['step']} | {result} | {s['seconds']:.1f} | {s.get('peak_rss_mb') or '-'} | {_cell(s['counts']).replace('|', '/')} |"
        )
    if rep["findings"]:
        lines += ["", "Findings:", "", *(f"- {f}" for f in rep["findings"])]
    errors = [s for s in rep["steps"] if s["error"]]
    for s in errors:
        lines += ["", f"`{s['step']}` failed (`{s['command']}`):", "", "```", s["error"], "```"]
    return "\n".join(lines) + "\n"


def write(rep: dict[str, Any], out: Path) -> None:
    """``rehearsal.json`` and ``rehearsal.md`` in ``out``."""
    (out / "rehearsal.json").write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
    (out / "rehearsal.md").write_text(markdown(rep), encoding="utf-8")
