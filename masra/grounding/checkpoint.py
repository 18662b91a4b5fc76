"""Checkpoint folders: config JSON, safetensors weights and a pickle-free training state.

Layout of ``{run}/best`` and ``{run}/last``::

    config.json              format, dataset card name, model / loss / train configs, epoch, step, metrics
    model.safetensors        the model's weights (all that inference needs)
    criterion.safetensors    learnable criterion parameters, if any (training only)
    optimizer.safetensors    optimizer state tensors, keyed "<param index>.<name>"
    trainer_state.json       optimizer param groups, scheduler state, epoch, step, best metric
    rng_<rank>.safetensors   torch CPU / CUDA generator states of process <rank>
    rng_<rank>.json          Python and NumPy generator states of process <rank>

Nothing is unpickled when loading. A folder is written under a temporary name and renamed into place,
so a killed save never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from masra.grounding.config import LossConfig, ModelConfig
from masra.grounding.model import MasraModel, build_model

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",
    "finalize_checkpoint",
    "load_checkpoint",
    "load_rng_state",
    "load_training_state",
    "read_checkpoint_config",
    "save_rng_state",
    "save_training_state",
    "staging_dir",
]

CHECKPOINT_FORMAT = "masra-grounding-checkpoint/1"


def staging_dir(final: Path) -> Path:
    """The temporary folder a checkpoint is written to before :func:`finalize_checkpoint`."""
    return final.parent / f".{final.name}.tmp"


def save_training_state(
    folder: Path,
    *,
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: dict[str, Any],
    state: dict[str, Any],
) -> None:
    """Write everything but the RNG states into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "config.json", "w", encoding="utf-8") as f:
        json.dump({"format": CHECKPOINT_FORMAT, **config}, f, indent=2, default=str)
    save_model(model, str(folder / "model.safetensors"))
    if any(True for _ in criterion.state_dict()):
        save_model(criterion, str(folder / "criterion.safetensors"))
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in opt["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    save_file(tensors, str(folder / "optimizer.safetensors"))
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    with open(folder / "trainer_state.json", "w", encoding="utf-8") as f:
        json.dump(
            {"param_groups": opt["param_groups"], "optimizer_scalars": scalars, "scheduler": sched, **state},
            f,
            indent=2,
        )


def save_rng_state(folder: Path, rank: int) -> None:
    """Every generator of this process: torch CPU (+ CUDA), Python ``random`` and NumPy."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    save_file(tensors, str(folder / f"rng_{rank}.safetensors"))
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    py_state = random.getstate()
    with open(folder / f"rng_{rank}.json", "w", encoding="utf-8") as f:
        json.dump(
            {
                "python": [py_state[0], list(py_state[1]), py_state[2]],
                "numpy": [
                    str(np_state[0]),
                    np_state[1].tolist(),
                    int(np_state[2]),
                    int(np_state[3]),
                    float(np_state[4]),
                ],
            },
            f,
        )


def load_rng_state(folder: Path, rank: int) -> None:
    path = folder / f"rng_{rank}.safetensors"
    if not path.is_file():
        log.warning(
            "%s: no RNG state for process %d; dropout streams will differ from the original run", folder, rank
        )
        return
    tensors = load_file(str(path))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    with open(folder / f"rng_{rank}.json", encoding="utf-8") as f:
        states = json.load(f)
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = states["numpy"]
    np.random.set_state((npy[0], np.asarray(npy[1], dtype=np.uint32), *npy[2:]))


def load_training_state(
    folder: Path,
    *,
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore weights, optimizer and scheduler from ``folder``; returns the trainer state dict."""
    load_model(model, str(folder / "model.safetensors"))
    if (folder / "criterion.safetensors").is_file():
        load_model(criterion, str(folder / "criterion.safetensors"))
    with open(folder / "trainer_state.json", encoding="utf-8") as f:
        state: dict[str, Any] = json.load(f)
    tensors = load_file(str(folder / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = value
    for idx, extra in state.pop("optimizer_scalars", {}).items():
        opt_state.setdefault(int(idx), {}).update(extra)
    optimizer.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    sched = state.pop("scheduler")
    scheduler.load_state_dict({**scheduler.state_dict(), **sched})
    return state


def finalize_checkpoint(staging: Path, final: Path) -> None:
    """Move a complete staging folder into place, replacing ``final``."""
    if final.exists():
        aside = final.parent / f".{final.name}.old"
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(final, aside)
        os.rename(staging, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(staging, final)


def read_checkpoint_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"not a masra checkpoint (no config.json): {folder}")
    with open(path, encoding="utf-8") as f:
        config: dict[str, Any] = json.load(f)
    if config.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: format {config.get('format')!r}, this masra reads {CHECKPOINT_FORMAT!r}")
    model = config.get("model")
    if isinstance(model, dict) and "prior_placement" not in model:
        # Written before ModelConfig.prior_placement existed: the prior heads then read the
        # query-conditioned features ("cross"), without the video encoder of today's default.
        model["prior_placement"] = "cross"
    return config


def load_checkpoint(
    folder: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[MasraModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint folder in eval mode; returns (model, config dict).

    The config dict holds ``dataset``, ``model``, ``loss``, ``train``, ``epoch``, ``step`` and
    ``metrics``; ``ModelConfig.from_dict(config["model"])`` gives the typed model config.
    """
    config = read_checkpoint_config(folder)
    model_cfg = ModelConfig.from_dict(config["model"])
    LossConfig.from_dict(config["loss"])  # validate
    model = build_model(model_cfg)
    load_model(model, str(Path(folder) / "model.safetensors"), device=str(device))
    model.to(device).eval()
    return model, config
