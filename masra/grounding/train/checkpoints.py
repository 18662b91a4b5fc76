"""The trainer's checkpoints: write and restore the training state, publish it into the run folder.

Layout of a run folder's checkpoints (safe against a kill at any instant)::

    checkpoints/step-000000123/   one complete checkpoint per saved step (written as
                                  ``checkpoints/.step-000000123.tmp`` and renamed into place)
    best.json  last.json          pointers {"checkpoint": "checkpoints/step-...", "step", "epoch"}, each
                                  replaced atomically (temporary file, then ``os.replace``)
    best  last                    symbolic links to the pointed folders, replaced atomically (a new
                                  link, then ``os.replace``); where symbolic links are not available,
                                  copies of the folders, and the pointer files say which is current

A step folder appears under its final name only once complete, and every pointer or link replacement
is one atomic rename, so at every instant ``best`` and ``last`` name complete checkpoints (the
pointer files, read by :func:`~masra.grounding.checkpoint.resolve_checkpoint`, cover the copy
fallback and run folders of older masra versions, whose ``best/`` and ``last/`` are plain folders).
Folders no pointer names are pruned after each save. ``--resume`` continues from the newest complete
step folder (:func:`find_resume_checkpoint`).

The files of one checkpoint folder are those of :mod:`masra.grounding.checkpoint` (the format and
its reader); :func:`save_training_state` and :func:`save_rng_state` write them, and
:func:`load_training_state` and :func:`load_rng_state` restore a run from them. Nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file, save_model
from torch import nn

from masra.fsops import swap_in_folder
from masra.grounding.checkpoint import (
    CHECKPOINT_FORMAT,
    POINTER_NAMES,
    is_complete_checkpoint,
    pointed_checkpoint,
    read_safetensors,
)

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINTS_DIR",
    "adopt_checkpoint",
    "checkpoint_folder",
    "checkpoint_staging",
    "find_resume_checkpoint",
    "load_rng_state",
    "load_training_state",
    "point_checkpoint",
    "prune_checkpoints",
    "publish_checkpoint",
    "save_rng_state",
    "save_training_state",
]

CHECKPOINTS_DIR = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def _step_name(step: int) -> str:
    return f"step-{step:09d}"


def checkpoint_folder(run_dir: Path, step: int) -> Path:
    """``{run_dir}/checkpoints/step-<step>``: where :func:`publish_checkpoint` puts the checkpoint of ``step``."""
    return Path(run_dir) / CHECKPOINTS_DIR / _step_name(step)


def checkpoint_staging(run_dir: Path, step: int) -> Path:
    """The temporary folder the checkpoint of ``step`` is written to before :func:`publish_checkpoint`."""
    return Path(run_dir) / CHECKPOINTS_DIR / f".{_step_name(step)}.tmp"


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
    tensors = read_safetensors(path)
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
    read_safetensors(folder / "model.safetensors", model)
    if (folder / "criterion.safetensors").is_file():
        read_safetensors(folder / "criterion.safetensors", criterion)
    with open(folder / "trainer_state.json", encoding="utf-8") as f:
        state: dict[str, Any] = json.load(f)
    tensors = read_safetensors(folder / "optimizer.safetensors")
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


def _remove(folder: Path) -> None:
    """Delete a folder: first renamed to a hidden name (one atomic step), then removed."""
    if not folder.exists():
        return
    gone = folder.parent / f".{folder.name}.del"
    shutil.rmtree(gone, ignore_errors=True)
    os.rename(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _replace_folder_entry(run_dir: Path, name: str, new: Path) -> None:
    """Put ``new`` (a link or a folder) in place of ``{run_dir}/{name}``."""
    # A plain folder there (an older masra's, or the copy fallback's) takes two renames; the pointer
    # file already names the new checkpoint, which resolve_checkpoint reads meanwhile.
    swap_in_folder(new, run_dir / name, run_dir / f".{name}.replaced")


def point_checkpoint(run_dir: Path, name: str, folder: Path) -> None:
    """Make ``{run_dir}/{name}`` (``best`` or ``last``) and its pointer file name ``folder``."""
    run_dir = Path(run_dir)
    rel = os.path.relpath(folder, run_dir)
    state: dict[str, Any] = {}
    try:
        with open(folder / "trainer_state.json", encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        pass
    _write_json_atomic(
        run_dir / f"{name}.json", {"checkpoint": rel, "step": state.get("step"), "epoch": state.get("epoch")}
    )
    link = run_dir / f".{name}.link.tmp"
    if link.is_symlink() or link.is_file():
        link.unlink()
    try:
        os.symlink(rel, link, target_is_directory=True)
    except (OSError, NotImplementedError):  # no symbolic links here: a copy of the folder
        copy = run_dir / f".{name}.copy.tmp"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(folder, copy)
        _replace_folder_entry(run_dir, name, copy)
        return
    _replace_folder_entry(run_dir, name, link)


def _step_folders(run_dir: Path) -> list[tuple[int, Path]]:
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and is_complete_checkpoint(p):
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(run_dir: Path) -> None:
    """Remove step folders no pointer names, unfinished staging folders and older masra's leftovers."""
    run_dir = Path(run_dir)
    keep = {p.resolve() for p in (pointed_checkpoint(run_dir, n) for n in POINTER_NAMES) if p is not None}
    if len(keep) == 0:
        return
    root = run_dir / CHECKPOINTS_DIR
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if _STEP_DIR.match(p.name):
            if p.resolve() not in keep:
                _remove(p)
        elif p.name.startswith(".") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    for name in POINTER_NAMES:
        for leftover in (f".{name}.old", f".{name}.tmp", f".{name}.replaced", f".{name}.copy.tmp"):
            shutil.rmtree(run_dir / leftover, ignore_errors=True)


def publish_checkpoint(staging: Path, run_dir: Path, step: int, names: tuple[str, ...]) -> Path:
    """Rename a complete staging folder to ``checkpoints/step-<step>``, point ``names`` at it, prune."""
    run_dir = Path(run_dir)
    final = checkpoint_folder(run_dir, step)
    if final.exists():
        # Left by a run killed before its pointers moved (so no pointer names it), or a repeated save.
        named = [
            n
            for n in POINTER_NAMES
            if (p := pointed_checkpoint(run_dir, n)) is not None and p.resolve() == final.resolve()
        ]
        if named:
            raise FileExistsError(f"{final} exists and is the current {' and '.join(named)} checkpoint")
        _remove(final)
    os.rename(staging, final)
    for name in names:
        point_checkpoint(run_dir, name, final)
    prune_checkpoints(run_dir)
    return final


def _legacy_state_step(folder: Path) -> int | None:
    if not is_complete_checkpoint(folder):
        return None
    try:
        with open(folder / "trainer_state.json", encoding="utf-8") as f:
            return int(json.load(f)["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None.

    The newest ``checkpoints/step-*`` folder (even one a killed run wrote but did not yet point
    ``last`` at); for a run folder of an older masra, the complete one of ``last/`` and the
    ``.last.old`` / ``.last.tmp`` folders its non-atomic replacement could leave.
    """
    run_dir = Path(run_dir)
    steps = _step_folders(run_dir)
    if steps:
        return steps[-1][1]
    legacy = [
        (step, p)
        for p in (run_dir / "last", run_dir / ".last.old", run_dir / ".last.tmp")
        if (step := _legacy_state_step(p)) is not None
    ]
    return max(legacy, key=lambda sp: sp[0])[1] if legacy else None


def adopt_checkpoint(run_dir: Path, folder: Path, *, is_best: bool) -> None:
    """After resuming from ``folder``: point ``last`` at it (and ``best`` when it was the best, or
    when no ``best`` is left), then prune. Nothing is done for a folder outside ``checkpoints/``."""
    run_dir = Path(run_dir)
    if folder.resolve().parent != (run_dir / CHECKPOINTS_DIR).resolve():
        return
    current = pointed_checkpoint(run_dir, "last")
    if current is None or current.resolve() != folder.resolve():
        point_checkpoint(run_dir, "last", folder)
    best = pointed_checkpoint(run_dir, "best")
    if best is None and not is_best:
        log.warning("%s: no best checkpoint is left; best now points at %s", run_dir, folder)
    if best is None or (is_best and best.resolve() != folder.resolve()):
        point_checkpoint(run_dir, "best", folder)
    prune_checkpoints(run_dir)
