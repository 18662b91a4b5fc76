"""`masra train` and `masra ablate`: parse options into a TrainConfig and run training."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from masra.datasets.card import parse_overrides
from masra.grounding.config import MASRA_PARTS, TrainConfig, load_train_config
from masra.pipelines.options import prior_run_option

log = logging.getLogger(__name__)

ABLATION_COLUMNS = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP")


def _config(
    dataset: str,
    config: str | None,
    sets: tuple[str, ...],
    priors_run: str | None,
    no_masra: bool,
    no_config: bool,
) -> TrainConfig:
    overrides: dict[str, Any] = parse_overrides(list(sets))
    if priors_run is not None:
        overrides["priors_run"] = priors_run
    if no_masra:
        overrides["masra"] = False
    try:
        return load_train_config(dataset, config, overrides, no_config=no_config)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    except FileNotFoundError as e:  # no card, or no config file: the message names every place looked
        raise click.ClickException(str(e)) from None


_common = [
    click.option("--dataset", "-d", required=True, help="Dataset card: a name ($MASRA_CARDS, ./data/datasets, the shipped cards) or a YAML path."),
    click.option("--config", "config", default=None, help="Training config YAML (default: <dataset>.yaml from $MASRA_CONFIGS, ./configs, the shipped configs; none found is an error)."),
    click.option("--no-config", is_flag=True, help="Read no config file: the built-in defaults plus --set (for your own card without a config)."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override, e.g. epochs=20, model.hidden_dim=128, card.root=/data/x."),
    prior_run_option(old="--priors", help="Prior run: its folder name under the card's prior_dir (default: the config's priors_run)."),
]  # fmt: skip


def _with_common(fn: Any) -> Any:
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


@click.command("train")
@_with_common
@click.option("--out", default=None, help="Run folder (default runs/<dataset>).")
@click.option("--no-masra", is_flag=True, help="Train the baseline: every MASRA part off, no priors read.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its newest complete checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete the run that --out holds and start afresh.")
@click.option("--store", default=None, help="Feature store folder (default {card root}/store).")
def train(
    dataset: str,
    config: str | None,
    no_config: bool,
    sets: tuple[str, ...],
    priors_run: str | None,
    out: str | None,
    no_masra: bool,
    resume: bool,
    overwrite: bool,
    store: str | None,
) -> None:
    """Train a grounding model; writes {out}/best, {out}/last, metrics.jsonl, train_log.jsonl, summary.json.

    A folder that already holds a run is refused unless --resume (continue it; only epochs, eval
    cadence, log_every, eval_batch_size, postprocess.*, cpu_threads and compile may change) or
    --overwrite (replace it).
    """
    from accelerate import PartialState

    from masra.grounding.train.recipe import run_training

    cfg = _config(dataset, config, sets, priors_run, no_masra, no_config)
    run_dir = Path(out or f"runs/{Path(dataset).stem}")
    try:
        summary = run_training(cfg, run_dir, resume=resume, store_dir=store, overwrite=overwrite)
    except (FileNotFoundError, ValueError, FloatingPointError) as e:  # bad data, priors or a NaN loss
        raise click.ClickException(str(e)) from e
    if not PartialState().is_main_process:
        return
    best = summary.get("best_metrics") or {}
    base = (summary.get("position_baseline") or {}).get("best_brief") or {}
    click.echo(
        f"best {cfg.best_metric} = {summary.get('best_value')} at epoch {summary.get('best_epoch')}; "
        f"R1@0.5 {best.get('MR-full-R1@0.5')} vs position-only baseline {base.get('MR-full-R1@0.5')}; "
        f"checkpoint {run_dir / 'best'}"
    )


def ablation_variants(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """Overrides of each ablation run: the baseline, full MASRA and each part removed."""
    variants: dict[str, dict[str, Any]] = {"baseline": {"masra": False}, "masra": {"masra": True}}
    for part in MASRA_PARTS:
        variants[f"masra-no-{part}"] = {"masra": True, f"model.use_{part}": False}
    return variants


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the ablation columns, one row per variant."""
    lines = ["| variant | " + " | ".join(ABLATION_COLUMNS) + " |", "|---" * (len(ABLATION_COLUMNS) + 1) + "|"]
    for name, metrics in rows.items():
        cells = [f"{float(metrics[c]):.2f}" if metrics.get(c) is not None else "-" for c in ABLATION_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@click.command("ablate")
@_with_common
@click.option("--out", required=True, help="Folder for one run per variant plus ablation.json / ablation.md.")
@click.option("--overwrite", is_flag=True, help="Replace the variants' runs that --out already holds.")
def ablate(
    dataset: str,
    config: str | None,
    no_config: bool,
    sets: tuple[str, ...],
    priors_run: str | None,
    out: str,
    overwrite: bool,
) -> None:
    """Train the baseline, full MASRA and MASRA with each part removed; print R1@0.5, R1@0.7, mAP."""
    from masra.grounding.train.recipe import run_training

    base_cfg = _config(dataset, config, sets, priors_run, False, no_config)
    out_dir = Path(out)
    rows: dict[str, dict[str, Any]] = {}
    for name, extra in ablation_variants(base_cfg).items():
        variant_sets = (*sets, *(f"{k}={json.dumps(v)}" for k, v in extra.items()))
        cfg = _config(dataset, config, variant_sets, priors_run, False, no_config)
        log.info("ablation: %s", name)
        try:
            summary = run_training(cfg, out_dir / name, overwrite=overwrite)
        except (FileNotFoundError, ValueError) as e:
            raise click.ClickException(f"ablation {name}: {e}") from e
        rows[name] = dict(summary.get("best_metrics") or {})
    table = format_table(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ablation.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    (out_dir / "ablation.md").write_text(table + "\n", encoding="utf-8")
    click.echo(table)


COMMANDS: list[click.Command] = [train, ablate]
