"""ATen ops (and, on CUDA, GPU kernels) dispatched by one training step, baseline vs MASRA, per part.

At the QVHighlights shapes the training step is bound by kernel launches on a GPU, so the number of
ops a step dispatches is the cost that MASRA's parts add. Unlike a wall time it is deterministic, so
it can be compared on a busy machine. The step counted here is the trainer's: ``TrainStep`` (model
forward, then the criterion in float32), ``weighted_total`` and ``Accelerator.backward``; gradient
clipping and the optimizer are not part of it.

Both variants are built as ``masra train`` builds them (``TrainConfig`` -> ``build_configs`` with the
dataset card's feature sizes -> ``build_model`` / ``build_criterion``, prepared by Accelerate) and
fed the same random batch at the card's shapes (B videos of up to L clips, T query tokens, 3-8 prior
events per video). After one untimed warm-up step, one step runs under a ``TorchDispatchMode`` that
counts every ATen op and attributes it to a part:

* forward ops to the innermost labelled region: a top-level child of the model (``model.sge``,
  ``model.decoder``, ...), the criterion's matcher, a function the criterion's entry point calls
  (``criterion.prior_losses``, ``criterion.saliency_rank_contrastive_loss``, ...) or the glue
  code around them (``model``, ``criterion``);
* backward ops to the region whose forward created the autograd node being run (every node is
  labelled as it is created, through a ``TorchFunctionMode``); AccumulateGrad nodes count with the
  part that first used the parameter, and the engine's own ops (the seed gradient) as ``backward``.

"compute" ops leave out views and aliases (``view``, ``transpose``, ``detach``, ...), which launch
no kernel on a GPU. ``syncs`` counts ``aten._local_scalar_dense`` (``.item()``, ``float(t)``,
``bool(t)``): a host sync on a GPU; it cannot see device-to-host copies, which are no-ops on a CPU.
With ``--device cuda`` the GPU kernels (and memcpy/memset) of one more step are counted with
``torch.profiler``, and the synchronising calls of another (``cuda_syncs``, e.g. the matcher's copy
of its cost matrix to the host) with ``torch.cuda.set_sync_debug_mode``. ``--time-rounds N`` also times both variants
in alternating rounds (medians; the load average is reported beside them).

Run: ``python -m bench.op_count --json out.json`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from accelerate import Accelerator
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from bench.common import env_info, pick_device, resolve_precision, write_json
from masra.datasets.card import load_card
from masra.grounding import (
    Batch,
    PriorBatch,
    TrainConfig,
    TrainStep,
    build_configs,
    build_criterion,
    build_model,
    weighted_total,
)

log = logging.getLogger(__name__)

__all__ = [
    "OpCountConfig",
    "Variant",
    "build_variant",
    "count_step_flops",
    "count_step_ops",
    "random_batch",
    "run_op_count",
]

VARIANTS = ("baseline", "masra")
_LABEL = "op_count_part"  # key of the part label in an autograd node's metadata


@dataclass(frozen=True)
class OpCountConfig:
    """What to count.

    Attributes:
        dataset: card whose feature sizes the model is built for (video 2304 + 512 + 2, text 512 for
            QVHighlights).
        batch_size / num_clips / text_len: B, L, T of the random batch.
        prior_dim: Dp of the prior embeddings (384 = MiniLM).
        min_events / max_events: prior events per video, drawn uniformly.
        device / precision: ``auto`` picks cuda + bf16 when a GPU is there, else cpu + float32.
        time_rounds / time_steps: alternating timing rounds (0 skips timing) and steps per round.
        model: ModelConfig overrides (e.g. a small ``hidden_dim`` for smoke tests).
    """

    dataset: str = "qvhighlights"
    batch_size: int = 32
    num_clips: int = 75
    text_len: int = 32
    prior_dim: int = 384
    min_events: int = 3
    max_events: int = 8
    device: str = "cpu"
    precision: str = "auto"
    time_rounds: int = 0
    time_steps: int = 3
    seed: int = 0
    variants: tuple[str, ...] = VARIANTS
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_size", "num_clips", "text_len", "prior_dim", "min_events", "time_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"OpCountConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_events < self.min_events:
            raise ValueError("OpCountConfig.max_events must be >= min_events")
        if self.time_rounds < 0:
            raise ValueError("OpCountConfig.time_rounds must be >= 0")
        if not self.variants or set(self.variants) - set(VARIANTS):
            raise ValueError(f"OpCountConfig.variants must be a non-empty subset of {VARIANTS}")


# ---- data --------------------------------------------------------------------------------------------
def random_batch(
    cfg: OpCountConfig, video_dim: int, text_dim: int, device: torch.device, dtype: torch.dtype
) -> Batch:
    """A labelled batch with priors at the config's shapes; a quarter of the videos are shorter than L.

    Spans: 1-3 moments per video; saliency 0-4 inside them; events: ``min_events``-``max_events``
    random spans per video whose descriptions come from a small pool (so some texts repeat); their
    event-clip membership is given, as a resident split gives it.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    b, length, t_len, dp = cfg.batch_size, cfg.num_clips, cfg.text_len, cfg.prior_dim
    short = torch.rand(b, generator=gen) < 0.25
    lengths = torch.where(short, torch.randint(max(1, length // 2), length + 1, (b,), generator=gen), length)
    video_mask = torch.arange(length)[None, :] < lengths[:, None]  # (B, L)
    tokens = torch.randint(max(1, t_len // 4), t_len + 1, (b,), generator=gen)
    text_mask = torch.arange(t_len)[None, :] < tokens[:, None]  # (B, T)
    centers = (torch.arange(length)[None, :] + 0.5) / lengths[:, None]  # (B, L)
    spans, saliency = [], torch.zeros(b, length)
    for i in range(b):
        n = int(torch.randint(1, 4, (1,), generator=gen))
        width = 0.05 + 0.25 * torch.rand(n, generator=gen)
        center = width / 2 + (1 - width) * torch.rand(n, generator=gen)
        spans.append(torch.stack([center, width], -1))  # (n, 2) (center, width)
        inside = ((centers[i][None, :] - center[:, None]).abs() <= width[:, None] / 2).any(0)
        saliency[i] = 4 * torch.rand(length, generator=gen) * inside * video_mask[i]
    events = cfg.max_events
    n_events = torch.randint(cfg.min_events, events + 1, (b,), generator=gen)
    event_mask = torch.arange(events)[None, :] < n_events[:, None]  # (B, E)
    bounds = torch.rand(b, events, 2, generator=gen).sort(-1).values * event_mask[..., None]
    pool = torch.randn(max(4, b * events // 3), dp, generator=gen)
    event_emb = pool[torch.randint(0, pool.shape[0], (b, events), generator=gen)]  # (B, E, Dp)
    priors = PriorBatch(
        event_spans=bounds,
        event_emb=event_emb,
        event_mask=event_mask,
        caption_emb=torch.randn(b, length, dp, generator=gen),
        caption_mask=video_mask.clone(),
        has_prior=torch.ones(b, dtype=torch.bool),
    )
    # The membership comes with the batch, as a resident split derives it once (not a per-step cost).
    priors = priors.with_member(video_mask)
    batch = Batch(
        video=torch.randn(b, length, video_dim, generator=gen) * video_mask[..., None],
        video_mask=video_mask,
        text=torch.randn(b, t_len, text_dim, generator=gen) * text_mask[..., None],
        text_mask=text_mask,
        spans=spans,
        saliency=saliency,
        priors=priors,
        meta=[
            {"qid": i, "vid": f"v{i}", "duration": 2.0 * int(lengths[i]), "clip_len": 2.0} for i in range(b)
        ],
    ).to(device)
    batch.video, batch.text = batch.video.to(dtype), batch.text.to(dtype)
    return batch


# ---- attribution -------------------------------------------------------------------------------------
class _Regions:
    """The stack of forward labels: model children and criterion parts, through hooks and a profiler."""

    def __init__(self, model: nn.Module, criterion: nn.Module) -> None:
        self.stack: list[str] = ["step"]
        self._handles: list[Any] = []
        self._frames: list[FrameType] = []
        self._previous: Any = None
        self._modules: list[tuple[nn.Module, str]] = [(model, "model"), (criterion, "criterion")]
        self._modules += [(child, f"model.{name}") for name, child in model.named_children()]
        self._modules += [(child, f"criterion.{name}") for name, child in criterion.named_children()]
        cls = type(criterion)
        # Functions the criterion's entry points call are regions of their own.
        self._drivers = {vars(cls)[n].__code__ for n in ("forward", "_losses") if n in vars(cls)}

    @property
    def current(self) -> str:
        return self.stack[-1]

    @contextmanager
    def region(self, label: str) -> Iterator[None]:
        self.stack.append(label)
        try:
            yield
        finally:
            self.stack.pop()

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_back is not None and frame.f_back.f_code in self._drivers:
            if frame.f_code.co_filename.startswith(_MASRA_DIR):
                self._frames.append(frame)
                self.stack.append(f"criterion.{frame.f_code.co_name}")
        elif event == "return" and self._frames and frame is self._frames[-1]:
            self._frames.pop()
            self.stack.pop()

    def __enter__(self) -> _Regions:
        for module, label in self._modules:
            self._handles.append(module.register_forward_pre_hook(self._push(label)))
            self._handles.append(module.register_forward_hook(self._pop, always_call=True))
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(self._previous)
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _push(self, label: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            self.stack.append(label)

        return hook

    def _pop(self, *_: Any) -> None:
        self.stack.pop()


_MASRA_DIR = str(Path(__file__).resolve().parents[1] / "masra")


class _NodeLabeller(TorchFunctionMode):
    """Labels every autograd node a torch call creates with the forward region it was created in."""

    def __init__(self, regions: _Regions) -> None:
        super().__init__()
        self.regions = regions

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        label = self.regions.current
        todo: list[Any] = [x.grad_fn for x in tree_leaves(out) if isinstance(x, Tensor)]
        while todo:
            node = todo.pop()
            if node is None or _LABEL in node.metadata:
                continue
            node.metadata[_LABEL] = label
            todo.extend(fn for fn, _ in node.next_functions)
        return out


class _OpCounter(TorchDispatchMode):
    """Counts ATen ops per (phase, part); see the module docstring for the attribution."""

    def __init__(self, regions: _Regions) -> None:
        super().__init__()
        self.regions = regions
        self.ops: Counter[tuple[str, str]] = Counter()
        self.compute: Counter[tuple[str, str]] = Counter()
        self.syncs: Counter[tuple[str, str]] = Counter()
        self.names: Counter[str] = Counter()

    def key(self) -> tuple[str, str]:
        """(phase, part) of the op being dispatched; see the module docstring."""
        node: Any = torch._C._current_autograd_node()
        if node is None:
            return ("forward", self.regions.current)
        return ("backward", node.metadata.get(_LABEL, "backward"))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        key = self.key()
        self.ops[key] += 1
        self.names[str(func.overloadpacket)] += 1
        if not (func.is_view or func.overloadpacket in _ALIASES):
            self.compute[key] += 1
        if func.overloadpacket is torch.ops.aten._local_scalar_dense:
            self.syncs[key] += 1
        return func(*args, **(kwargs or {}))


_ALIASES = {torch.ops.aten.detach, torch.ops.aten.alias, torch.ops.aten.lift_fresh}


class _OpTimer(_OpCounter):
    """:class:`_OpCounter` that also sums each op's wall time per (phase, part). On a CPU ops run
    synchronously, so an op's time is its cost (plus the mode's own overhead, alike for every op)."""

    def __init__(self, regions: _Regions) -> None:
        super().__init__(regions)
        self.seconds: dict[tuple[str, str], float] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        key = self.key()
        t0 = time.perf_counter()
        out = super().__torch_dispatch__(func, types, args, kwargs)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
        return out


def time_step_parts(variant: Variant, batch: Batch, repeats: int = 3) -> dict[str, dict[str, float]]:
    """Milliseconds per part (forward / backward / total) of one step, the median over ``repeats``
    steps, from the ops' own wall times (CPU only: on a GPU ops are asynchronous)."""
    runs: list[dict[tuple[str, str], float]] = []
    inner = variant.acc.unwrap_model(variant.step)
    for _ in range(repeats):
        regions = _Regions(inner.model, inner.criterion)
        timer = _OpTimer(regions)
        with regions, _NodeLabeller(regions), timer:
            variant.run(batch, regions)
        runs.append(timer.seconds)
    keys = sorted({k for r in runs for k in r})
    parts: dict[str, dict[str, float]] = {}
    for phase, part in keys:
        row = parts.setdefault(part, {"forward": 0.0, "backward": 0.0})
        row[phase] = round(1000 * statistics.median(r.get((phase, part), 0.0) for r in runs), 1)
    for row in parts.values():
        row["total"] = round(row["forward"] + row["backward"], 1)
    return parts


# ---- the step ----------------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    step: nn.Module  # the prepared TrainStep
    weights: dict[str, float]
    acc: Accelerator

    def run(self, batch: Batch, regions: _Regions | None = None) -> None:
        """forward + criterion + weighted total + backward; gradients dropped afterwards."""
        _, losses = self.step(batch)
        with regions.region("weighted_total") if regions is not None else nullcontext():
            total = weighted_total(losses, self.weights)
        self.acc.backward(total)
        self.step.zero_grad(set_to_none=True)


def build_variant(
    name: str,
    cfg: OpCountConfig,
    acc: Accelerator,
    masra: bool | None = None,
    model: dict[str, Any] | None = None,
) -> tuple[Variant, int, int]:
    """The variant's prepared TrainStep as ``masra train`` builds it; also the card's video/text dims.

    ``masra``: MASRA or the baseline (default: whether ``name`` is ``"masra"``); ``model``: ModelConfig
    overrides of this variant over ``cfg.model``.
    """
    card = load_card(cfg.dataset)
    masra = name == "masra" if masra is None else masra
    overrides = {**cfg.model, **(model or {})}
    tcfg = TrainConfig(dataset=card.name, batch_size=cfg.batch_size, masra=masra, model=overrides)
    model_cfg, loss_cfg = build_configs(tcfg, card, cfg.prior_dim if masra else None)
    torch.manual_seed(cfg.seed)
    criterion = build_criterion(loss_cfg, model_cfg)
    step = acc.prepare(TrainStep(build_model(model_cfg), criterion))
    step.train()
    return Variant(name, step, criterion.weights, acc), model_cfg.video_dim, model_cfg.text_dim


def count_step_ops(variant: Variant, batch: Batch) -> dict[str, Any]:
    """Counts of one step: totals, per (phase, part), and the 15 most frequent op names."""
    inner = variant.acc.unwrap_model(variant.step)
    regions = _Regions(inner.model, inner.criterion)
    counter = _OpCounter(regions)
    with regions, _NodeLabeller(regions), counter:
        variant.run(batch, regions)
    parts: dict[str, dict[str, int]] = {}
    for (phase, part), n in sorted(counter.ops.items()):
        row = parts.setdefault(part, {"forward": 0, "backward": 0, "compute": 0, "syncs": 0})
        row[phase] += n
        row["compute"] += counter.compute[(phase, part)]
        row["syncs"] += counter.syncs[(phase, part)]
    for row in parts.values():
        row["total"] = row["forward"] + row["backward"]
    phase_total = Counter[str]()
    for (phase, _), n in counter.ops.items():
        phase_total[phase] += n
    return {
        "ops": sum(counter.ops.values()),
        "compute_ops": sum(counter.compute.values()),
        "syncs": sum(counter.syncs.values()),
        "forward_ops": phase_total["forward"],
        "backward_ops": phase_total["backward"],
        "parts": parts,
        "top_ops": dict(counter.names.most_common(15)),
    }


def count_step_flops(variant: Variant, batch: Batch) -> int:
    """Floating-point operations of one step (forward, criterion, backward), as
    ``torch.utils.flop_counter`` counts them: matrix products, convolutions and attention only, so
    elementwise work, norms and reductions are not in it. On a CPU, where those products take most
    of a step, the FLOP ratio of two variants is about the floor of their step-time ratio."""
    with FlopCounterMode(display=False) as counter:
        variant.run(batch)
    return int(counter.get_total_flops())


def count_cuda_kernels(variant: Variant, batch: Batch) -> int:
    """GPU kernels (memcpy/memset included) of one step, from ``torch.profiler``."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        variant.run(batch)
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)


def count_cuda_syncs(variant: Variant, batch: Batch) -> int:
    """Host syncs of one step, as ``torch.cuda.set_sync_debug_mode`` warns about them (calling thread)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            variant.run(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum(1 for w in caught if "synchroniz" in str(w.message))


def time_steps(variants: list[Variant], batch: Batch, rounds: int, steps: int) -> dict[str, Any]:
    """Alternating rounds of ``steps`` steps per variant; per-step seconds summarised by the median."""
    cuda = batch.video.device.type == "cuda"
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    load_before = os.getloadavg()
    for _ in range(rounds):
        for v in variants:
            for _ in range(steps):
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                v.run(batch)
                if cuda:
                    torch.cuda.synchronize()
                times[v.name].append(time.perf_counter() - t0)
    out: dict[str, Any] = {
        "rounds": rounds,
        "steps_per_round": steps,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "median_s": {k: round(statistics.median(t), 4) for k, t in times.items()},
        "min_s": {k: round(min(t), 4) for k, t in times.items()},
    }
    if "baseline" in times and "masra" in times:
        out["masra_over_baseline"] = round(out["median_s"]["masra"] / out["median_s"]["baseline"], 3)
    return out


def run_op_count(cfg: OpCountConfig) -> dict[str, Any]:
    """Count (and optionally time) every variant; a JSON-able dict."""
    device = pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    acc = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
    variants, dims = [], (0, 0)
    for name in (v for v in VARIANTS if v in cfg.variants):
        variant, *dims_ = build_variant(name, cfg, acc)
        variants.append(variant)
        dims = (dims_[0], dims_[1])
    batch = random_batch(cfg, dims[0], dims[1], device, torch.float32)
    result: dict[str, Any] = {
        "bench": "op_count",
        "env": env_info(device),
        "precision": precision,
        "config": asdict(cfg),
        "variants": {},
    }
    for v in variants:
        v.run(batch)  # warm-up: lazy inits, allocator, autotuning
        counts = count_step_ops(v, batch)
        if device.type == "cuda":
            counts["cuda_kernels"] = count_cuda_kernels(v, batch)
            counts["cuda_syncs"] = count_cuda_syncs(v, batch)
        result["variants"][v.name] = counts
        log.info("%s: %d aten ops per step (%d compute)", v.name, counts["ops"], counts["compute_ops"])
    found = result["variants"]
    if "baseline" in found and "masra" in found:
        keys = ["ops", "compute_ops"] + (["cuda_kernels"] if device.type == "cuda" else [])
        result["ratios"] = {k: round(found["masra"][k] / found["baseline"][k], 3) for k in keys}
    if cfg.time_rounds:
        result["timing"] = time_steps(variants, batch, cfg.time_rounds, cfg.time_steps)
    return result


def format_table(result: dict[str, Any]) -> str:
    """Markdown: totals per variant, then ops per part (forward / backward / total) side by side."""
    found = result["variants"]
    names = list(found)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    keys = ["ops", "compute_ops", "forward_ops", "backward_ops", "syncs", "cuda_kernels", "cuda_syncs"]
    for key in (k for k in keys if any(k in found[n] for n in names)):
        lines.append(f"| {key} | " + " | ".join(str(found[n].get(key, "-")) for n in names) + " |")
    for key, value in result.get("ratios", {}).items():
        lines.append(f"| masra / baseline {key} | " + " | ".join(["", f"{value:.3f}"][-len(names) :]) + " |")
    lines += ["", "| part | " + " | ".join(f"{n} fwd / bwd / total" for n in names) + " |"]
    lines.append("|---|" + "---|" * len(names))
    parts = sorted({p for n in names for p in found[n]["parts"]})
    for part in parts:
        cells = []
        for n in names:
            row = found[n]["parts"].get(part)
            cells.append("-" if row is None else f"{row['forward']} / {row['backward']} / {row['total']}")
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    timing = result.get("timing")
    if timing:
        med = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timing["median_s"].items())
        lines += [
            "",
            f"step medians ({timing['rounds']} alternating rounds of {timing['steps_per_round']}): {med}; "
            f"ratio {timing.get('masra_over_baseline', '-')}; load average before {timing['loadavg_before']}, "
            f"after {timing['loadavg_after']}",
        ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=OpCountConfig.dataset)
    p.add_argument("--batch-size", type=int, default=OpCountConfig.batch_size)
    p.add_argument("--clips", type=int, default=OpCountConfig.num_clips)
    p.add_argument("--text-len", type=int, default=OpCountConfig.text_len)
    p.add_argument("--prior-dim", type=int, default=OpCountConfig.prior_dim)
    p.add_argument("--device", default=OpCountConfig.device, help="cpu, cuda or auto")
    p.add_argument("--precision", default="auto", help="auto, no, bf16 or fp16")
    p.add_argument("--time-rounds", type=int, default=0, help="alternating timing rounds (0: none)")
    p.add_argument("--time-steps", type=int, default=OpCountConfig.time_steps)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = OpCountConfig(
        dataset=args.dataset,
        batch_size=args.batch_size,
        num_clips=args.clips,
        text_len=args.text_len,
        prior_dim=args.prior_dim,
        device=args.device,
        precision=args.precision,
        time_rounds=args.time_rounds,
        time_steps=args.time_steps,
        variants=tuple(v for v in args.variants.split(",") if v),
    )
    result = run_op_count(cfg)
    print(format_table(result))  # the CLI's output
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
