"""Turn benchmark result dicts into the Markdown sections of ``bench/results/RUNLOG.md`` and the console."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["append_markdown", "estimate_full_training", "render_markdown"]


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def estimate_full_training(
    train: dict[str, Any], infer: dict[str, Any] | None, epochs: int = 200, eval_every: int = 5
) -> dict[str, Any]:
    """Seconds for ``epochs`` epochs + an evaluation every ``eval_every`` epochs, per variant.

    Evaluation cost per run = predict + post-process + score of the val split (the split is resident,
    so its load is paid once). Always an extrapolation from the timed steps.
    """
    out: dict[str, Any] = {"epochs": epochs, "eval_every": eval_every, "extrapolated": True}
    for name, v in train.get("variants", {}).items():
        base = name.split("+")[0]
        eval_s = 0.0
        if infer and base in infer.get("variants", {}):
            ph = infer["variants"][base]["e2e_phases_s"]
            eval_s = ph["predict_s"] + ph["postprocess_s"] + ph["score_s"]
        total = epochs * v["s_per_epoch"] + (epochs // eval_every) * eval_s
        out[name] = {"seconds": round(total, 1), "minutes": round(total / 60, 2)}
    return out


def render_markdown(result: dict[str, Any]) -> str:
    """One Markdown section: machine line, training table, inference table, phase profile, stage 1."""
    env = result.get("env", {})
    train, infer, stage1 = result.get("train"), result.get("infer"), result.get("stage1")
    machine = env.get("gpu") or f"CPU only, {env.get('cpus')} cores"
    lines = [
        f"### {result.get('date', '?')} · host `{env.get('host', '?')}` · {machine} · dataset {result.get('dataset')}",
        "",
        f"torch {env.get('torch')}, device {env.get('device')}, torch CPU threads "
        f"{env.get('cpu_threads_torch')}, load average at start {env.get('loadavg_1m')}. "
        f"Data: {result.get('data_description', '-')}.",
        "",
    ]
    if train and not train.get("variants"):
        lines += [f"**Training**: no timed steps (warm-up seconds: {train.get('warmup_s')}).", ""]
    if train and train.get("variants"):
        tv = train["variants"]
        lines += [
            f"**Training** (batch {train['batch_size']}, {train['precision']} precision, "
            f"{train['timed_steps_per_variant']} timed steps per variant after {train['warmup_steps']} "
            f"warm-up, {train['steps_per_epoch']} steps per epoch; s/epoch "
            f"{'EXTRAPOLATED from the timed steps' if any(v['s_per_epoch_extrapolated'] for v in tv.values()) else 'measured'}).",
            "",
            "| variant | median step s | p90 step s | queries/s | s/epoch | data wait s/step (share) | GPU peak MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in tv.items():
            lines.append(
                f"| {name} | {_f(v['step']['median_s'])} | {_f(v['step']['p90_s'])} | "
                f"{_f(v['queries_per_s'], 1)} | {_f(v['s_per_epoch'], 1)} | "
                f"{_f(v['data_wait_s_per_step'], 4)} ({100 * v['data_wait_share']:.1f} %) | "
                f"{_f(v['gpu_peak_mib'], 0)} |"
            )
        for k, r in train.get("ratios", {}).items():
            verdict = "meets" if r <= 1.15 else "MISSES"
            lines.append(f"\nStep-time ratio {k.replace('_', ' ')}: **{r:.3f}** ({verdict} the 1.15 target).")
        lines += [
            "",
            f"Peak RSS of the training benchmark: {_f(train.get('peak_rss_mib'), 0)} MiB; "
            f"data load: {train.get('load_s')}.",
            "",
        ]
        prof = {n: v["phases_s_per_step"] for n, v in tv.items() if v.get("phases_s_per_step")}
        if prof:
            phases = list(next(iter(prof.values())))
            lines += [
                "Where a training step's time goes (seconds per step, every phase synchronised):",
                "",
                "| variant | " + " | ".join(phases) + " |",
                "|---|" + "---|" * len(phases),
            ]
            for name, ph in prof.items():
                tot = sum(ph.values()) or 1.0
                lines.append(
                    f"| {name} | "
                    + " | ".join(f"{ph[p]:.4f} ({100 * ph[p] / tot:.0f} %)" for p in phases)
                    + " |"
                )
            lines.append("")
    if infer:
        iv = infer["variants"]
        lines += [
            f"**Inference** ({infer['val_queries']} val queries, {infer['precision']} precision, eval batch "
            f"{infer['eval_batch_size']}; priors never reach the model).",
            "",
            "| variant | batched queries/s | single-query latency median ms (p90) | e2e val eval s | GPU peak MiB |",
            "|---|---|---|---|---|",
        ]
        for name, v in iv.items():
            sq = v["single_query_latency"]
            lines.append(
                f"| {name} | {_f(v['batched_queries_per_s'], 1)} | {1000 * sq['median_s']:.1f} "
                f"({1000 * sq['p90_s']:.1f}) | {_f(v['e2e_eval_s'], 2)} | {_f(v['gpu_peak_mib'], 0)} |"
            )
        for k, r in infer.get("ratios", {}).items():
            lines.append(f"\n{k.replace('_', ' ')}: **{r:.3f}**.")
        costs = infer.get("part_costs_ms_per_query")
        if costs:
            lines.append(
                "\nForward cost per query in eval mode, the baseline with one MASRA part at a time (ms): "
                + ", ".join(f"{k} {v:.2f}" for k, v in costs.items())
                + "."
            )
        first = next(iter(iv.values()))
        lines += [
            "",
            f"End-to-end eval phases (first variant, seconds): {first['e2e_phases_s']}; peak RSS "
            f"{_f(infer.get('peak_rss_mib'), 0)} MiB.",
            "",
        ]
    est = result.get("estimate_200_epochs")
    if est:
        parts = [f"{n}: {v['minutes']:.1f} min" for n, v in est.items() if isinstance(v, dict)]
        lines += [
            f"**{est['epochs']} epochs with evaluation every {est['eval_every']} (extrapolated):** "
            + ", ".join(parts)
            + ".",
            "",
        ]
    extra = result.get("gpu_extra") or {}
    fit = extra.get("fit_masra")
    if fit:
        lines += [
            f"**Real Trainer.fit** ({fit['variant']}, {fit['epochs']} epochs of {fit['steps_per_epoch']} steps, "
            f"evaluation + checkpoints every epoch): {fit['train_s_per_epoch']:.1f} s per epoch of training, "
            f"{fit['eval_s_each']:.2f} s per evaluation; projected 200 epochs with evaluation every 5: "
            f"**{fit['projected_200_epochs_eval_every_5_min']:.1f} min** (projection from measured epochs).",
            "",
        ]
    for key, title in (("train_compile", "torch.compile"), ("train_batch128", "batch 128")):
        ex = extra.get(key)
        if ex and not ex.get("variants"):
            lines += [f"**{title}**: no timed steps (warm-up seconds: {ex.get('warmup_s')}).", ""]
        if ex and ex.get("variants"):
            cells = ", ".join(
                f"{n}: median step {v['step']['median_s']:.4f} s, {v['queries_per_s']:.0f} queries/s, "
                f"{v['s_per_epoch']:.1f} s/epoch (extrapolated)"
                + (f", warm-up {v['warmup_s']:.1f} s" if v.get("warmup_s") is not None else "")
                for n, v in ex["variants"].items()
            )
            comp = ex.get("compile")
            if comp and "graph_breaks" in comp:
                cells += (
                    f"; {comp['backend']}: {comp['unique_graphs']} graphs, {comp['graph_breaks']} graph "
                    f"breaks (compilation is in the {ex['warmup_steps']} warm-up steps)"
                )
            lines += [f"**{title}** (batch {ex['batch_size']}): {cells}.", ""]
    ops = extra.get("ops")
    if ops:
        keys = ("ops", "compute_ops", "syncs", "cuda_kernels", "cuda_syncs")
        cells = "; ".join(
            f"{n}: " + ", ".join(f"{v[k]} {k.replace('_', ' ')}" for k in keys if k in v)
            for n, v in ops["variants"].items()
        )
        ratios = ", ".join(f"{k.replace('_', ' ')} {r:.3f}" for k, r in ops.get("ratios", {}).items())
        lines += [
            f"**Per training step** ({ops['precision']}, bench/op_count.py): {cells}"
            + (f"; masra / baseline: {ratios}" if ratios else "")
            + ".",
            "",
        ]
    if stage1:
        lines += [
            f"**Stage 1 without the model** ({stage1['videos']} videos of {stage1['duration_s']:.0f} s, "
            f"engine: {stage1['engine']}, caption mode {stage1['caption_mode']}): "
            f"**{stage1['videos_per_s']:.2f} videos/s** ({stage1['requests_per_video']:.0f} requests "
            f"per video). Phases (s per video): {stage1['phases_s_per_video']}.",
            "",
        ]
    return "\n".join(lines) + "\n"


def append_markdown(path: Path, section: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(
            "# Benchmark run log\n\nWritten by `make bench`, `make bench-priors` and `bench/gpu.sh`.\n\n"
        )
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n" + section)


def publish(section: str, results: Path, docs: Path | None) -> None:
    """Append ``section`` to the run log ``docs`` (None: not), then print it and where ``results`` are."""
    if docs is not None:
        append_markdown(docs, section)
    print(section)
    print(f"results: {results}")
