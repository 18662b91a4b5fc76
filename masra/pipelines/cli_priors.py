"""`masra priors ...`: stage 1, MLLM priors (generate, or import priors written elsewhere), their text
embeddings (embed), their quality (report).

Examples::

    masra priors generate --dataset charades --backend vllm --shard 0/4
    masra priors generate --dataset qvhighlights --data-parallel 8      # one engine per GPU
    masra priors generate --dataset qvhighlights --executor ray --ray-address auto --data-parallel 16
    masra priors generate --dataset charades --backend openai --base-url http://127.0.0.1:8000/v1
    masra priors embed --dataset charades --encoder minilm
    masra priors report --dataset charades
    masra priors import captions.jsonl --dataset charades --priors-run my-captions

Settings come from, in order of precedence: these options, the card's ``priors:`` mapping (e.g.
``priors: {model: ..., backend: ..., caption_mode: dense, fps: 0.5}``), the defaults in
``masra.prior_gen``. A prior run is named by ``--priors-run`` (``--run`` is its old, deprecated
name; training reads the run of the config's ``priors_run``). See docs/priors.md.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

import click

from masra.datasets.card import DatasetCard, load_card, parse_overrides
from masra.pipelines.cli_priors_scale import executor_for, launch_data_parallel, parse_shard
from masra.pipelines.options import prior_run_option

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
_CARD_KEYS = {
    "model", "backend", "prompt_family", "splits", "encoder",
    "caption_mode", "fps", "max_frames", "frames_per_clip", "max_side", "skip_nonref", "max_events",
    "event_max_tokens", "caption_max_tokens", "dense_tokens_per_clip", "batch_videos", "batch_size", "decode_workers",
    "max_model_len", "mm_processor_kwargs", "vllm_options",
}  # fmt: skip

_DATASET = click.option("--dataset", "-d", required=True, help="Card name or path to a card YAML.")
_SET = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a card key (repeatable)."
)
_MODEL = click.option(
    "--model", default=None, help=f"Model folder or hub id [card priors.model, else {DEFAULT_MODEL}]."
)
_FAMILY = click.option(
    "--prompt-family", default=None, help="Prompt family (default: detected from the model)."
)
_RUN = prior_run_option(
    old="--run", value_type=click.Path(file_okay=False, path_type=Path), metavar="DIR|NAME",
    help="Prior run: its folder, or its name under the card's prior_dir (default: the folder `generate` writes).",
)  # fmt: skip


def _card(dataset: str, overrides: tuple[str, ...]) -> tuple[DatasetCard, dict[str, Any]]:
    """The card and its ``priors`` settings (validated keys)."""
    try:
        card = load_card(dataset, parse_overrides(overrides))
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    settings = card.extra.get("priors") or {}
    if not isinstance(settings, dict):
        raise click.ClickException(f"card {card.name!r}: `priors` must be a mapping")
    unknown = sorted(set(settings) - _CARD_KEYS)
    if unknown:
        raise click.ClickException(
            f"card {card.name!r}: unknown priors keys {unknown}; known: {sorted(_CARD_KEYS)}"
        )
    return card, settings


def _check_model(model: str) -> None:
    """A model given as a path must exist; hub ids (``org/name``) are left to the backend."""
    looks_like_path = (
        model.startswith((".", "/", "~")) or model.count("/") != 1 or Path(model).parent.is_dir()
    )
    if looks_like_path and not Path(model).expanduser().is_dir():
        hint = " Build the tiny test model with `make tiny-models`." if "tiny_models" in model else ""
        raise click.ClickException(f"model folder not found: {model}.{hint}")


def _run_dir(
    card: DatasetCard, settings: dict[str, Any], model: str | None, family: str | None
) -> tuple[Path, str, Any]:
    from masra.prior_gen import prompts
    from masra.prior_gen.runs import run_dir_for

    model = model or settings.get("model") or DEFAULT_MODEL
    try:
        fam = prompts.resolve_family(model, family or settings.get("prompt_family"))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    return run_dir_for(card.prior_dir, card.name, model, prompts.prompt_version(fam)), model, fam


def _existing_run(
    card: DatasetCard, st: dict[str, Any], run: Path | None, model: str | None, family: str | None
) -> Path:
    """``--priors-run`` as given, or as a name under ``card.prior_dir``, else the folder ``generate`` writes."""
    from masra.priors.run import PriorRun

    if run is None:
        return _run_dir(card, st, model, family)[0]
    named = PriorRun(card.prior_dir, str(run)).dir
    if not run.is_dir() and named.is_dir():
        return named
    return run


@click.group("priors")
def priors() -> None:
    """Stage 1: MLLM priors (event spans + clip captions) as Parquet shards."""


@priors.command("generate")
@_DATASET
@_SET
@click.option(
    "--split",
    "splits",
    multiple=True,
    help="Annotation split(s) giving the videos [card, else train; no annotations: all of video_dir].",
)
@_MODEL
@click.option("--revision", default=None, help="Hub revision of the model.")
@click.option(
    "--backend",
    type=click.Choice(["vllm", "transformers", "openai"]),
    default=None,
    help="[vllm with a GPU]; openai: a served model (--base-url).",
)
@_FAMILY
@click.option("--caption-mode", type=click.Choice(["per_clip", "dense"]), default=None, help="[per_clip]")
@click.option("--fps", type=float, default=None, help="Frames/s for the events prompt [1.0].")
@click.option("--max-frames", type=int, default=None, help="Frame cap of the events prompt [64].")
@click.option("--batch-videos", type=int, default=None, help="Videos per batch and shard [16].")
@click.option(
    "--decode-workers", type=int, default=None, help="Threads decoding videos ahead of the engine [2]."
)
@click.option("--shard", default="0/1", show_default=True, help="Do part i of N (disjoint, by video id).")
@click.option("--limit", type=int, default=None, help="Only the first N videos of the shard (smoke tests).")
@click.option(
    "--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run folder."
)
@click.option("--tensor-parallel", type=int, default=1, show_default=True, help="vLLM: GPUs per engine.")
@click.option(
    "--data-parallel",
    type=int,
    default=1,
    show_default=True,
    help="Engines, one per GPU group: processes (local executor) or engine actors (ray).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process; ray: a Ray Data pipeline on a cluster (the `ray` extra).",
)
@click.option("--ray-address", default=None, help="Ray cluster to join (e.g. auto) [a new local one].")
@click.option(
    "--base-url", default=None, help="openai backend: the server's API root, e.g. http://host:8000/v1."
)
@click.option("--api-key-env", default=None, help="openai backend: environment variable with the API key.")
@click.option(
    "--max-concurrency", type=int, default=8, show_default=True, help="openai backend: requests in flight."
)
@click.option(
    "--request-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="openai backend: seconds per reply.",
)
@click.option(
    "--max-retries",
    type=int,
    default=5,
    show_default=True,
    help="openai backend: retries on 429/5xx/timeouts.",
)
@click.option("--dtype", default="auto", show_default=True)
@click.option("--max-model-len", type=int, default=None, help="vLLM context length [16384].")
@click.option("--gpu-memory-utilization", type=float, default=0.9, show_default=True)
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the hub (off by default).")
@click.option(
    "--break-lock",
    is_flag=True,
    help="Take the part's lock even if another host's writer holds it (only when that writer is gone).",
)
def generate(**kw: Any) -> None:
    """Generate priors for a dataset's videos (resumable; reruns skip finished videos)."""
    from masra.prior_gen.engines import EngineConfig, default_backend, load_engine
    from masra.prior_gen.engines.openai_engine import ServerUnavailableError
    from masra.prior_gen.generate import GenerateConfig, PriorGenerator, RunLockedError, generate_priors
    from masra.prior_gen.runs import BadShardError, ShardSpec, videos_from_card, videos_from_folder
    from masra.prior_gen.video import VideoConfig

    card, st = _card(kw["dataset"], kw["overrides"])
    shard = parse_shard(kw["shard"])
    if kw["data_parallel"] > 1 and kw["executor"] == "local":
        launch_data_parallel(kw["data_parallel"], kw["tensor_parallel"], shard)
        return
    backend = kw["backend"] or st.get("backend") or default_backend()
    if backend != "openai":  # a served model's name is the server's business
        _check_model(kw["model"] or st.get("model") or DEFAULT_MODEL)
    run_dir, model, fam = _run_dir(card, st, kw["model"], kw["prompt_family"])

    def pick(name: str, default: Any) -> Any:
        return kw[name] if kw.get(name) is not None else st.get(name, default)

    try:
        video = VideoConfig(
            fps=pick("fps", 1.0),
            max_frames=pick("max_frames", 64),
            frames_per_clip=st.get("frames_per_clip", 2),
            max_side=st.get("max_side", 448),
            skip_nonref=bool(st.get("skip_nonref", False)),
        )
        cfg = GenerateConfig(
            video=video,
            caption_mode=pick("caption_mode", "per_clip"),
            max_events=st.get("max_events", 16),
            event_max_tokens=st.get("event_max_tokens", 1024),
            caption_max_tokens=st.get("caption_max_tokens", 48),
            dense_tokens_per_clip=st.get("dense_tokens_per_clip", 24),
            batch_videos=pick("batch_videos", 16),
            decode_workers=pick("decode_workers", 2),
        )
        engine_cfg = EngineConfig(
            model=model,
            backend=backend,
            revision=kw["revision"],
            trust_remote_code=kw["trust_remote_code"],
            dtype=kw["dtype"],
            tensor_parallel_size=kw["tensor_parallel"],
            gpu_memory_utilization=kw["gpu_memory_utilization"],
            max_model_len=pick("max_model_len", 16384),
            mm_processor_kwargs=st.get("mm_processor_kwargs", {}),
            vllm_options=st.get("vllm_options", {}),
            batch_size=st.get("batch_size", 8),
            base_url=kw["base_url"],
            api_key_env=kw["api_key_env"],
            max_concurrency=kw["max_concurrency"],
            request_timeout=kw["request_timeout"],
            max_retries=kw["max_retries"],
        )
        spec = ShardSpec(*shard)
        executor = executor_for(kw)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    splits = (
        list(kw["splits"])
        or st.get("splits")
        or (["train"] if "train" in card.annotations else list(card.annotations))
    )
    try:
        if splits:
            items = videos_from_card(card, splits)
        else:  # a card without annotation files: every video of its video_dir
            items = videos_from_folder(card.video_dir)
            log.info(
                "no annotation files: the %d videos of %s, durations from their files",
                len(items),
                card.video_dir,
            )
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    run_dir = kw["run_dir"] or run_dir
    gen = PriorGenerator(family=fam, clip_len=card.clip_len, max_clips=card.max_clips, cfg=cfg)
    try:
        summary = generate_priors(
            items,
            generator=gen,
            engine_factory=functools.partial(load_engine, engine_cfg),  # pickles, for Ray
            run_dir=run_dir,
            shard=spec,
            manifest_extra={"dataset": card.name, "splits": splits, "requested_model": model},
            limit=kw["limit"],
            break_lock=kw["break_lock"],
            executor=executor,
        )
    except (RunLockedError, ServerUnavailableError, BadShardError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"priors in {run_dir}")
    click.echo(summary.line())


@priors.command("embed")
@_DATASET
@_SET
@_MODEL
@_FAMILY
@_RUN
@click.option(
    "--encoder", default=None, help="minilm, or a transformers text encoder folder/id [card, else minilm]."
)
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
def embed(dataset: str, overrides: tuple[str, ...], model: str | None, prompt_family: str | None,
          priors_run: Path | None, encoder: str | None, device: str, batch_size: int) -> None:  # fmt: skip
    """Embed a prior run's event texts and clip captions (float16 shards keyed by video_id)."""
    from masra.prior_gen.embed import embed_prior_run
    from masra.text_encoder import TextEncoder

    card, st = _card(dataset, overrides)
    run_dir = _existing_run(card, st, priors_run, model, prompt_family)
    enc = TextEncoder.load(
        encoder or st.get("encoder") or card.extra.get("text_encoder") or "minilm", device=device
    )
    try:
        out = embed_prior_run(run_dir, enc, batch_size=batch_size)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"embeddings in {out}")


@priors.command("report")
@_DATASET
@_SET
@_MODEL
@_FAMILY
@_RUN
@click.option(
    "--split", "splits", multiple=True, help="Splits with ground truth to compare with [all labelled]."
)
@click.option(
    "--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="[{run}/report.json]"
)
def report(dataset: str, overrides: tuple[str, ...], model: str | None, prompt_family: str | None,
           priors_run: Path | None, splits: tuple[str, ...], json_out: Path | None) -> None:  # fmt: skip
    """Quality and coverage of a prior run against the annotations: a table and a JSON file."""
    from masra.datasets.readers import load_queries
    from masra.prior_gen.report import format_report, prior_report

    card, st = _card(dataset, overrides)
    run_dir = _existing_run(card, st, priors_run, model, prompt_family)
    queries = []
    for split in splits or [s for s in card.annotations if card.annotations[s].is_file()]:
        try:
            queries += load_queries(card, split)[0]
        except (ValueError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from None
    try:
        rep = prior_report(run_dir, queries)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    json_out = json_out or run_dir / "report.json"
    json_out.write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
    click.echo(format_report(rep))
    click.echo(f"report written to {json_out}")


class _BadInput(click.ClickException):
    """A user error in the data or the target of a command: ``Error: ...``, exit code 2."""

    exit_code = 2


def _check_run_name(run: str) -> None:
    """A prior run is a folder name under the card's ``prior_dir`` (training names it by ``priors_run``)."""
    from masra.prior_gen.importer import check_video_id

    reason = check_video_id(run, "run name")
    if reason:
        raise click.BadParameter(reason, param_hint="--priors-run")


@priors.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_DATASET
@_SET
@prior_run_option(
    old="--run", default="imported", help="Prior run name: its folder under the card's prior_dir."
)
@click.option("--skip-bad", is_flag=True, help="Write the valid rows even when some rows are refused.")
@click.option("--overwrite", is_flag=True, help="Replace the run's existing shards (and its embeddings).")
@click.option("--model-id", default="imported", show_default=True, help="Recorded as the rows' model_id.")
def import_cmd(file: Path, dataset: str, overrides: tuple[str, ...], priors_run: str, skip_bad: bool,
               overwrite: bool, model_id: str) -> None:  # fmt: skip
    """Import priors written elsewhere (JSON lines: vid, duration, events, clip_captions) as a prior run."""
    from masra.prior_gen.importer import check_run_dir, parse_import_file, write_imported
    from masra.priors.run import PriorRun

    card, _ = _card(dataset, overrides)
    _check_run_name(priors_run)
    if not model_id.strip():
        raise click.BadParameter("must not be empty", param_hint="--model-id")
    run_dir = PriorRun(card.prior_dir, priors_run).dir
    try:
        check_run_dir(run_dir, overwrite)
        parsed = parse_import_file(file, clip_len=card.clip_len, max_clips=card.max_clips)
    except (OSError, ValueError) as e:
        raise _BadInput(str(e)) from None
    for msg in parsed.refused:
        click.echo(f"refused: {msg}", err=True)
    for msg in parsed.refitted:
        click.echo(f"warning: {msg}", err=True)
    n_bad, n_good = len(parsed.refused), len(parsed.videos)
    if not n_good:
        raise _BadInput(f"{file}: no valid rows ({parsed.rows_read} read, {n_bad} refused); nothing written")
    if n_bad and not skip_bad:
        raise _BadInput(
            f"{file}: {n_bad} of {parsed.rows_read} rows refused; nothing written "
            f"(fix them, or pass --skip-bad to import the {n_good} valid rows)"
        )
    try:
        rep = write_imported(
            parsed,
            run_dir,
            dataset=card.name,
            clip_len=card.clip_len,
            max_clips=card.max_clips,
            model_id=model_id,
            overwrite=overwrite,
        )
    except (OSError, ValueError) as e:
        raise _BadInput(str(e)) from None
    click.echo(rep.line())
    click.echo(f"next: masra priors embed --dataset {dataset} --priors-run {priors_run}")


COMMANDS: list[click.Command] = [priors]
