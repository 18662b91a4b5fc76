"""One rehearsal end to end: the world, then every command in order, then the report.

Order (a step whose input failed is skipped, and says so):

1. ``world``: features for every video, query features, videos for the sample, the rehearsal card;
2. ``tiny-models``: ``make tiny-models`` (the tiny random Qwen2.5-VL; not run with ``--tiny-model``);
3. ``priors-import``: ``masra priors import`` of synthetic priors for the train videos without a
   video file, into the folder ``masra priors generate`` writes (see :mod:`rehearsal.priors`);
4. ``make-priors``: ``make priors`` (generate for the sampled videos, embed, report);
5. ``priors-embed``: ``masra priors embed`` of the run again (nothing new to embed: checks the rerun);
6. ``train``: ``make train`` with the shipped training config, one epoch of a few steps
   (``label_fraction``), every train video joined with its priors;
7. ``eval-<split>``: ``make eval`` of the best checkpoint on every labelled split besides train;
8. ``predict-text``: ``masra predict --vid`` with a query sentence (through the card's text encoder);
9. ``predict-video``: ``masra predict --video`` on a sampled video (through the card's extractors).
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from masra.datasets.card import load_card
from masra.grounding.config.train import find_train_config

from . import report
from .offline import text_blocker, video_blocker
from .priors import generate_run_name, write_import_file
from .sources import REPO, Source, limit_source, open_source, pick_videos
from .steps import Step, make, masra, run_step
from .world import REAL, REDUCED, build_world


@dataclass(frozen=True)
class Options:
    """What the command line asks for (see ``python -m scripts.rehearsal --help``)."""

    dataset: str
    out: Path
    annotations_root: Path | None = None
    real_widths: bool = False
    videos: int = 2
    limit_videos: int | None = None
    max_video_seconds: float = 60.0
    train_steps: int = 4
    seed: int = 0
    tiny_model: Path | None = None
    timeout: float = 3600.0
    extractor_models: tuple[tuple[str, str], ...] = ()
    text_encoder: str | None = None


def sample_videos(source: Source, n: int, max_seconds: float) -> list[str]:
    """``n`` train videos that get a video file: awkward ones first (``pick_videos``) among those at
    most ``max_seconds`` long (the tiny MLLM captions every clip: ~0.3 s a clip here), then the
    shortest others."""
    train = [v for v in source.videos().values() if "train" in v.splits]
    short = [v for v in train if v.duration <= max_seconds]
    picked = pick_videos(short, min(n, len(short)), source.card.clip_len) if short else []
    rest = sorted((v for v in train if v.vid not in picked), key=lambda v: (v.duration, v.vid))
    return picked + [v.vid for v in rest[: max(0, n - len(picked))]]


def eval_split(card_path: Path, source: Source) -> tuple[str, str | None]:
    """The training config's eval split, or (when the card has no such split) the first labelled
    split besides train, with a finding saying so."""
    cfg_path = find_train_config(str(card_path))
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) if cfg_path else {}
    split = (cfg or {}).get("eval_split", "val")
    if split in source.queries:
        return split, None
    other = next(s for s in source.labelled_splits() if s != "train")
    return other, (
        f"the training config {cfg_path} evaluates on {split!r}, which the {source.dataset} card does "
        f"not have (splits: {', '.join(source.queries)}): `make train DATASET={source.dataset}` stops"
    )


def train_eval_split(card_path: Path, source: Source) -> tuple[str | None, list[str]]:
    """The ``eval_split`` override training needs (None: the config's own will do) and the findings
    behind it: a split the card lacks (:func:`eval_split`), or qids that train shares with another
    split (:func:`shared_qids`), which a feature store of both refuses: then no evaluation in training
    (``null``), and ``make eval`` scores each split alone."""
    split, note = eval_split(card_path, source)
    findings = [note] if note else []
    clashes = shared_qids(source)
    if clashes:
        pairs = ", ".join(f"{k}: {n}" for k, n in clashes.items())
        findings.append(
            f"qids shared by splits for different queries ({pairs}): their query features are one file "
            "(qid<qid>.npz), and a feature store of train and the eval split is refused"
        )
    override = "null" if clashes else (split if note else None)
    if override is not None:
        findings.append(
            f"the rehearsal trains with --set eval_split={override}"
            + (
                " (no evaluation during training) and scores each split with `make eval` alone"
                if clashes
                else ""
            )
        )
    return override, findings


MARKER = ".rehearsal"


def fresh_folder(out: Path) -> Path:
    """``out``, emptied: a folder that an earlier rehearsal wrote (it holds :data:`MARKER`) is deleted
    and made again; any other non-empty folder is refused, so that nothing else is ever deleted."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise FileExistsError(f"{out} is not empty and is not a rehearsal folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m scripts.rehearsal; deleted by the next rehearsal here\n")
    return out


def shared_qids(source: Source) -> dict[str, int]:
    """Per pair of splits ``"a/b"``, how many qids both use for different queries (another video or
    sentence). Feature files are ``qid<qid>.npz`` in one folder, so such qids share one file."""
    seen: dict[str, tuple[str, str, str]] = {}
    out: dict[str, int] = {}
    for split, qs in source.queries.items():
        for q in qs:
            key = str(q.qid)
            first = seen.setdefault(key, (split, q.vid, q.query))
            if first[0] != split and first[1:] != (q.vid, q.query):
                pair = f"{first[0]}/{split}"
                out[pair] = out.get(pair, 0) + 1
    return out


def rehearse(opt: Options) -> dict[str, Any]:
    """Run the rehearsal into ``opt.out``; returns the report (also written there)."""
    t0 = time.perf_counter()
    out = fresh_folder(opt.out.resolve())  # deleting an earlier rehearsal's files can take a minute
    t_world = time.perf_counter()
    logs = out / "logs"
    findings: list[str] = []

    world_step = Step("world", ["python", "-m", "scripts.rehearsal", "(in process)"])
    source = open_source(opt.dataset, opt.annotations_root)
    if opt.limit_videos:
        source = limit_source(source, opt.limit_videos, out / "annotations")
    sampled = sample_videos(source, opt.videos, opt.max_video_seconds)
    tiny_model = (opt.tiny_model or REPO / "data" / "generated" / "tiny_models" / "qwen2_5_vl").resolve()
    world = build_world(
        source, out, widths=REAL if opt.real_widths else REDUCED, sampled=sampled, tiny_model=tiny_model,
        seed=opt.seed, models=dict(opt.extractor_models), text_encoder=opt.text_encoder,
    )  # fmt: skip
    card = world.card_path
    dcard = load_card(card)
    world_step.rc, world_step.seconds = 0, time.perf_counter() - t_world
    world_step.notes.append(f"emptying {out} first took {t_world - t0:.1f} s")
    world_step.counts = world.summary(source, dcard.max_clips)

    run_name = generate_run_name(dcard)
    vids = source.videos()
    rest = [vids[v] for v in sorted(vids) if "train" in vids[v].splits and v not in world.videos]
    import_file = out / "priors_import.jsonl"
    import_info = write_import_file(rest, import_file, dcard, opt.seed)
    run_dir = out / "priors" / run_name
    train_run = out / "run"

    split, notes = train_eval_split(card, source)
    findings += notes
    train_queries = len(source.queries["train"])
    batch = _config_value(card, "batch_size", 32)
    fraction = min(1.0, opt.train_steps * batch / max(1, train_queries))
    train_args = [
        "--priors-run", run_name, "--overwrite", "--set", "epochs=1", "--set", "eval_every=1",
        "--set", "log_every=1", "--set", "cpu_threads=1", "--set", f"label_fraction={fraction:.6g}",
    ]  # fmt: skip
    if split is not None:
        train_args += ["--set", f"eval_split={split}"]
    labelled = [s for s in source.labelled_splits() if s != "train"]
    query = _text_query(source, labelled)
    predict_video = next(iter(world.videos.values()), None)

    steps: list[tuple[Step, list[str]]] = []
    if opt.tiny_model is None:
        steps.append((Step("tiny-models", make("tiny-models")), []))
    steps += [
        (Step("priors-import", masra("priors", "import", str(import_file), "--dataset", str(card), "--priors-run", run_name)), []),
        (Step("make-priors", make("priors", DATASET=str(card))), []),
        (Step("priors-embed", masra("priors", "embed", "--dataset", str(card), "--priors-run", run_name)), []),
        (Step("train", make("train", DATASET=str(card), RUN=str(train_run), ARGS=shlex.join(train_args))), ["priors-embed"]),
    ]  # fmt: skip
    for s in labelled:
        steps.append(
            (Step(f"eval-{s}", make("eval", DATASET=str(card), RUN=str(train_run), SPLIT=s)), ["train"])
        )
    ckpt = str(train_run / "best")
    text_cmd = masra("predict", "--checkpoint", ckpt, "--vid", query[0], "--query", query[1], "--json")
    steps.append((blocked(Step("predict-text", text_cmd), text_blocker(dcard)), ["train"]))
    if predict_video is not None:
        cmd = masra(
            "predict", "--checkpoint", ckpt, "--video", str(predict_video), "--query", query[1], "--json"
        )
        steps.append((blocked(Step("predict-video", cmd), video_blocker(dcard)), ["train"]))

    done: dict[str, Step] = {"world": world_step}
    for step, needs in steps:
        failed = [n for n in needs if n in done and not done[n].ok]
        if step.skipped:
            pass
        elif failed:
            step.skipped = f"{', '.join(failed)} failed"
        else:
            run_step(step, logs, opt.timeout)
        done[step.name] = step
        print(f"[rehearsal {opt.dataset}] {step.name}: {_status(step)}", flush=True)

    rep = report.build(
        opt=_opt_dict(opt),
        source=source,
        world=world,
        steps=list(done.values()),
        run_dir=run_dir,
        train_run=train_run,
        import_info=import_info,
        findings=findings,
        seconds=time.perf_counter() - t0,
    )
    report.write(rep, out)
    return rep


def blocked(step: Step, reason: str | None) -> Step:
    """``step``, marked skipped when what it needs is not on this machine (see :mod:`rehearsal.offline`)."""
    if reason:
        step.skipped = f"{report.OFFLINE}: {reason}"
    return step


def _status(step: Step) -> str:
    if step.skipped:
        return f"skipped ({step.skipped})"
    return f"{'ok' if step.ok else f'FAILED (rc {step.rc})'} in {step.seconds:.1f} s"


def _config_value(card: Path, key: str, default: int) -> int:
    path = find_train_config(str(card))
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) if path else None
    return int((cfg or {}).get(key, default))


def _text_query(source: Source, labelled: list[str]) -> tuple[str, str]:
    """(vid, sentence) of the first query of the first labelled eval split (else of train)."""
    q = source.queries[labelled[0] if labelled else "train"][0]
    return q.vid, q.query


def _opt_dict(opt: Options) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in opt.__dict__.items()}
