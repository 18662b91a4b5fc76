"""`make bench`: training and inference speed, MASRA's overhead and stage 1's own cost, in one report.

``python -m bench.run --dataset qvhighlights`` writes synthetic features of QVHighlights' exact shapes
(:mod:`bench.synth`) as a real feature store, then runs each benchmark in its own process (so each
reports its own peak RSS): :mod:`bench.train_speed`, :mod:`bench.infer_speed` and
:mod:`bench.stage1_speed`. ``--dataset fixture`` measures the same on the fixture world
(``make fixture``) with its reference priors.

Output: ``bench/results/<host>-<date>.json``, a Markdown section appended to the run log
``bench/results/RUNLOG.md`` naming the machine, and the same section on stdout. ``--append-docs RESULT.json`` only appends the
section of an earlier result (e.g. one that ``bench/gpu.sh`` wrote on another machine).

On CPU the torch thread count defaults to 1 (``--threads``): on a shared 2-core machine two OpenMP
threads were measured ~5x slower than one whenever other processes used the cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.options import add_masra_set_option
from bench.report import append_markdown, estimate_full_training, publish, render_markdown
from bench.synth import PRIOR_ENCODER, PRIOR_RUN, SynthConfig, make_synth, resolve_annotations

log = logging.getLogger("bench.run")

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("qvhighlights", "fixture")
BENCHES = ("train", "infer", "stage1")
PARTS = {  # JSON files of bench/gpu.sh's steps -> keys of the result
    "train.json": "train",
    "infer.json": "infer",
    "stage1.json": "stage1",
}
GPU_EXTRA = ("fit_masra", "train_compile", "train_batch128", "ops")


def assemble(folder: Path, dataset: str) -> dict[str, Any]:
    """One result from the per-benchmark JSON files in ``folder`` (what ``bench/gpu.sh`` leaves)."""
    result: dict[str, Any] = {"dataset": dataset}
    for name, key in PARTS.items():
        p = folder / name
        if p.is_file():
            result[key] = json.loads(p.read_text())
    extra = {
        n: json.loads((folder / f"{n}.json").read_text())
        for n in GPU_EXTRA
        if (folder / f"{n}.json").is_file()
    }
    if extra:
        result["gpu_extra"] = extra
    return result


def prepare_data(
    dataset: str, work: Path, annotations: str | None, fixture_dir: Path, scale: float = 1.0
) -> Path:
    """Write (or reuse) the benchmark data; returns the path of its ``bench_data.json``.

    ``scale`` < 1 shrinks the synthetic query and video counts (for dry runs of the scripts only;
    reported numbers are at scale 1).
    """
    work.mkdir(parents=True, exist_ok=True)
    if dataset == "qvhighlights":
        ann = resolve_annotations(annotations)
        full = SynthConfig(out=work / "qvh_synth")
        sizes = {
            k: max(1, round(getattr(full, k) * scale))
            for k in ("train_queries", "train_videos", "val_queries", "val_videos")
        }
        cfg = SynthConfig(out=work / "qvh_synth", annotations=ann, **sizes)  # type: ignore[arg-type]
        meta_path = cfg.out / "bench_data.json"
        key = repr(cfg)
        if meta_path.is_file() and json.loads(meta_path.read_text()).get("key") == key:
            log.info("reusing synthetic data in %s", cfg.out)
            return meta_path
        data = make_synth(cfg)
        meta = {
            "key": key,
            "card": str(data.card_path),
            "card_overrides": {},
            "store_path": str(data.store_path),
            "prior_run": PRIOR_RUN,
            "prior_encoder": PRIOR_ENCODER,
            "prior_dim": cfg.prior_dim,
            "window_source": data.window_source,
            "description": "synthetic QVHighlights-scale features, " + data.describe(),
        }
    else:
        from masra.datasets.card import load_card
        from masra.datasets.store_build import build_feature_store

        if not (fixture_dir / "fixture.json").is_file():
            raise SystemExit(f"no fixture at {fixture_dir}; run `make fixture` first (or pass --fixture-dir)")
        overrides = {"root": str(fixture_dir.resolve())}
        card = load_card("fixture", overrides)
        store = build_feature_store(card, ["train", "val"], work / "fixture_store")
        meta_path = work / "fixture_bench_data.json"
        meta = {
            "card": "fixture",
            "card_overrides": overrides,
            "store_path": str(store),
            "prior_run": "reference",
            "prior_encoder": "minilm",
            "prior_dim": 384,
            "window_source": "the fixture's own annotations",
            "description": f"the fixture world at {fixture_dir}",
        }
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta_path


def _run_module(module: str, args: list[str], out_json: Path) -> dict[str, Any] | None:
    """Run ``python -m module args --json out_json``; returns the parsed result or None on failure."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", module, *args, "--json", str(out_json)]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=env, cwd=REPO, check=False)
    if proc.returncode != 0 or not out_json.is_file():
        log.error("%s failed with exit code %d", module, proc.returncode)
        return None
    result: dict[str, Any] = json.loads(out_json.read_text())
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="qvhighlights")
    p.add_argument("--work", type=Path, default=REPO / "data" / "generated" / "bench", help="data folder")
    p.add_argument("--fixture-dir", type=Path, default=REPO / "data" / "generated" / "fixture")
    p.add_argument("--annotations", default="auto", help="auto | none | folder of the real QVH jsonl files")
    p.add_argument("--synth-scale", type=float, default=1.0, help="shrink the synthetic data (dry runs only)")
    p.add_argument("--only", default=",".join(BENCHES), help=f"subset of {BENCHES}")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per variant per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--single-queries", type=int, default=20)
    p.add_argument("--infer-repeats", type=int, default=None, help="timed val passes (default 1 CPU, 3 GPU)")
    p.add_argument("--stage1-videos", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd training")
    add_masra_set_option(
        p, "ModelConfig override of the timed MASRA variant only (a candidate against the baseline)."
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on CPU)")
    p.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--docs", type=Path, default=REPO / "bench" / "results" / "RUNLOG.md")
    p.add_argument("--no-docs", action="store_true", help="do not append to the run log")
    p.add_argument(
        "--result-name", default=None, help="file name of the result JSON (default <host>-<stamp>.json)"
    )
    p.add_argument("--append-docs", type=Path, default=None, help="only append this result JSON's section")
    p.add_argument(
        "--assemble", type=Path, default=None, help="build the result from per-benchmark JSONs here"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    if args.append_docs is not None:
        earlier = json.loads(args.append_docs.read_text())
        append_markdown(args.docs, render_markdown(earlier))
        print(render_markdown(earlier))
        return

    only = [b for b in args.only.split(",") if b]
    unknown = set(only) - {*BENCHES, "data"}
    if unknown:
        p.error(f"--only: unknown benchmarks {sorted(unknown)}; choose from {BENCHES}")
    now = dt.datetime.now(dt.timezone.utc)
    result: dict[str, Any] = {"date": now.strftime("%Y-%m-%d %H:%M UTC"), "dataset": args.dataset}
    meta_path = None
    if args.assemble is not None:
        result.update(assemble(args.assemble, args.dataset))
        if result.get("train"):
            result["data_description"] = result["train"].get("data")
    elif "train" in only or "infer" in only or "data" in only:
        meta_path = prepare_data(
            args.dataset, args.work, args.annotations, args.fixture_dir, args.synth_scale
        )
        result["synth_scale"] = args.synth_scale
        meta = json.loads(meta_path.read_text())
        result["data_description"] = meta["description"]
    if "data" in only and meta_path is not None:
        print(f"bench data: {meta_path}")
        return
    import torch  # not before: writing the data (bench/gpu.sh's first step) needs no torch

    on_cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    threads = args.threads if args.threads is not None else (0 if on_cuda else 1)
    common = ["--device", args.device, "--precision", args.precision, "--threads", str(threads)]
    stamp = now.strftime("%Y%m%d-%H%M%S")
    out_dir = args.work / f"results-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace(os.sep, "_")
    path = args.results_dir / (args.result_name or f"{host}-{stamp}.json")

    def save() -> None:  # after every part, so a run cut short keeps what it measured
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
        tmp.replace(path)

    if "train" in only and meta_path is not None and args.assemble is None:
        train_args = ["--data", str(meta_path), "--steps", str(args.steps), "--rounds", str(args.rounds)]
        train_args += ["--warmup", str(args.warmup), "--profile-steps", str(args.profile_steps)]
        train_args += ["--batch-size", str(args.batch_size), *common]
        train_args += ["--compile", "also"] if args.compile else []
        train_args += [f"--masra-set={item}" for item in args.masra_sets]
        result["train"] = _run_module("bench.train_speed", train_args, out_dir / "train.json")
        save()
    if "infer" in only and meta_path is not None and args.assemble is None:
        repeats = args.infer_repeats or (3 if on_cuda else 1)
        infer_args = ["--data", str(meta_path), "--single-queries", str(args.single_queries), *common]
        infer_args += ["--repeats", str(repeats)]
        result["infer"] = _run_module("bench.infer_speed", infer_args, out_dir / "infer.json")
        save()
    if "stage1" in only and args.assemble is None:
        if importlib.util.find_spec("av") is None:
            log.warning("stage-1 benchmark skipped: PyAV (av) is not installed here")
        else:
            s1_args = ["--videos", str(args.stage1_videos), "--work", str(args.work / "stage1")]
            result["stage1"] = _run_module("bench.stage1_speed", s1_args, out_dir / "stage1.json")
    for part in ("train", "infer"):
        if result.get(part):
            result["env"] = result[part]["env"]
            break
    else:
        from bench.common import env_info, pick_device

        result["env"] = env_info(pick_device(args.device))
    if result.get("train"):
        result["estimate_200_epochs"] = estimate_full_training(result["train"], result.get("infer"))
    save()
    publish(render_markdown(result), path, None if args.no_docs else args.docs)


if __name__ == "__main__":
    main()
