"""Checkpoint folders: config JSON, safetensors weights and a pickle-free training state.

Layout of ``{run}/best`` and ``{run}/last``::

    config.json              format, dataset card name, model / loss / train configs, epoch, step, metrics
    model.safetensors        the model's weights (all that inference needs)
    criterion.safetensors    learnable criterion parameters, if any (training only)
    optimizer.safetensors    optimizer state tensors, keyed "<param index>.<name>"
    trainer_state.json       optimizer param groups, scheduler state, epoch, step, best metric
    rng_<rank>.safetensors   torch CPU / CUDA generator states of process <rank>
    rng_<rank>.json          Python and NumPy generator states of process <rank>

Nothing is unpickled when loading.

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
pointer files, read by :func:`resolve_checkpoint`, cover the copy fallback and run folders of older
masra versions, whose ``best/`` and ``last/`` are plain folders). Folders no pointer names are
pruned after each save. ``--resume`` continues from the newest complete step folder
(:func:`find_resume_checkpoint`).

Reading a checkpoint for inference goes through :func:`read_checkpoint`, the one reader: it resolves
the folder (a checkpoint, the ``best`` / ``last`` link or pointer of a run, or a run folder: its best,
else its last checkpoint), checks the format, and returns a :class:`Checkpoint` of typed configs
(:class:`~masra.grounding.config.TrainConfig` with its ``PostprocessConfig``, ``ModelConfig``,
``LossConfig``), the prior run it trained with and its dataset card, resolved once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from masra.datasets.card import DatasetCard, load_card
from masra.fsops import swap_in_folder
from masra.grounding.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig
from masra.grounding.model import MasraModel, build_model

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINTS_DIR",
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "adopt_checkpoint",
    "checkpoint_folder",
    "checkpoint_staging",
    "find_resume_checkpoint",
    "load_checkpoint",
    "load_rng_state",
    "load_training_state",
    "point_checkpoint",
    "prune_checkpoints",
    "publish_checkpoint",
    "read_checkpoint",
    "read_checkpoint_config",
    "resolve_checkpoint",
    "save_rng_state",
    "save_training_state",
]

CHECKPOINT_FORMAT = "masra-grounding-checkpoint/1"
CHECKPOINTS_DIR = "checkpoints"
POINTER_NAMES = ("best", "last")
_STEP_DIR = re.compile(r"^step-(\d+)$")
_REQUIRED = ("config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json")


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


def _read(path: Path, model: nn.Module | None = None, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (into ``model`` when given); a damaged file is a ValueError
    naming it, not a bare library error."""
    try:
        if model is not None:
            load_model(model, str(path), device=device)
            return {}
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        real = path.resolve()
        named = f"{path} (= {real})" if real != path.absolute() else str(path)
        raise ValueError(
            f"{named}: cannot read this checkpoint file ({first}); it is damaged or incomplete. Use another "
            "checkpoint (checkpoints/step-*), or retrain"
        ) from None


def load_rng_state(folder: Path, rank: int) -> None:
    path = folder / f"rng_{rank}.safetensors"
    if not path.is_file():
        log.warning(
            "%s: no RNG state for process %d; dropout streams will differ from the original run", folder, rank
        )
        return
    tensors = _read(path)
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
    _read(folder / "model.safetensors", model)
    if (folder / "criterion.safetensors").is_file():
        _read(folder / "criterion.safetensors", criterion)
    with open(folder / "trainer_state.json", encoding="utf-8") as f:
        state: dict[str, Any] = json.load(f)
    tensors = _read(folder / "optimizer.safetensors")
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


def _pointed(run_dir: Path, name: str) -> Path | None:
    """The folder ``{run_dir}/{name}.json`` names, if it names a complete one."""
    pointer = Path(run_dir) / f"{name}.json"
    try:
        with open(pointer, encoding="utf-8") as f:
            target = Path(run_dir) / str(json.load(f)["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return target if _is_complete(target) else None


def _is_complete(folder: Path) -> bool:
    return folder.is_dir() and all((folder / n).is_file() for n in _REQUIRED)


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder ``path`` stands for, else ``path`` unchanged.

    In order: ``path`` itself when it holds ``config.json`` (a checkpoint folder, or the ``best`` /
    ``last`` link of a run); the folder its pointer file ``{path}.json`` names (during the instant a
    copied ``best`` / ``last`` is swapped); for a run folder, its best checkpoint, else its last one
    (each by the same two rules).
    """
    p = Path(path)
    for name in (p, *(p / n for n in POINTER_NAMES)):
        if (name / "config.json").is_file():
            return name
        pointed = _pointed(name.parent, name.name)
        if pointed is not None:
            return pointed
    return p


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
        if m and _is_complete(p):
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(run_dir: Path) -> None:
    """Remove step folders no pointer names, unfinished staging folders and older masra's leftovers."""
    run_dir = Path(run_dir)
    keep = {p.resolve() for p in (_pointed(run_dir, n) for n in POINTER_NAMES) if p is not None}
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
            if (p := _pointed(run_dir, n)) is not None and p.resolve() == final.resolve()
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
    if not _is_complete(folder):
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
    current = _pointed(run_dir, "last")
    if current is None or current.resolve() != folder.resolve():
        point_checkpoint(run_dir, "last", folder)
    best = _pointed(run_dir, "best")
    if best is None and not is_best:
        log.warning("%s: no best checkpoint is left; best now points at %s", run_dir, folder)
    if best is None or (is_best and best.resolve() != folder.resolve()):
        point_checkpoint(run_dir, "best", folder)
    prune_checkpoints(run_dir)


def read_checkpoint_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``config.json`` of the checkpoint ``folder`` stands for (:func:`resolve_checkpoint`), as a dict.

    Raises FileNotFoundError when there is none and ValueError for another format; fills in what
    older masra versions did not write.
    """
    path = resolve_checkpoint(folder) / "config.json"
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


@dataclass
class Checkpoint:
    """A checkpoint folder read as typed objects (build it with :func:`read_checkpoint`).

    Attributes:
        folder: the resolved checkpoint folder (``config.json`` + ``model.safetensors``).
        train: the run's training config; ``train.postprocess`` turns outputs into windows.
        model / loss: the model and loss configs the weights were trained with.
        priors_run: the prior run the model trained with (None: trained without priors).
        epoch / step / metrics: when it was saved, and the trainer's ``brief`` metrics then.
        datasets: the card names or paths tried, in order, for :attr:`card`.
        card_overrides: dataset-card overrides: the training run's, then the caller's.
        config: ``config.json`` as read (older fields filled in).
    """

    folder: Path
    train: TrainConfig
    model: ModelConfig
    loss: LossConfig
    priors_run: str | None
    epoch: int | None
    step: int | None
    metrics: dict[str, Any] | None
    datasets: tuple[str, ...]
    card_overrides: dict[str, Any]
    config: dict[str, Any]
    _card: DatasetCard | None = field(default=None, repr=False, compare=False)

    @property
    def postprocess(self) -> PostprocessConfig:
        """How model outputs become ranked windows (the training run's ``postprocess`` block)."""
        return self.train.postprocess

    @property
    def card(self) -> DatasetCard:
        """The dataset card, with :attr:`card_overrides` applied; loaded on first use, then kept.

        Each name of :attr:`datasets` but the last is skipped when no card of that name is found
        (the path a run was trained with may be gone); the last one's error is raised.
        """
        if self._card is None:
            if not self.datasets:
                raise ValueError(f"{self.folder}: the checkpoint config names no dataset; pass the card")
            for name in self.datasets[:-1]:
                try:
                    self._card = load_card(name, self.card_overrides)
                    break
                except FileNotFoundError:
                    continue
            else:
                self._card = load_card(self.datasets[-1], self.card_overrides)
        return self._card

    def build_model(self, device: torch.device | str = "cpu") -> MasraModel:
        """The model with the checkpoint's weights, on ``device``, in eval mode."""
        model = build_model(self.model)
        _read(self.folder / "model.safetensors", model, device=str(device))
        model.to(device).eval()
        return model


def _typed_train(config: dict[str, Any], where: Path) -> TrainConfig:
    """The training config of ``config.json``; keys this masra no longer knows are left out, said once."""
    raw = dict(config.get("train") or {})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        log.warning("%s: training config keys %s are unknown to this masra; ignored", where, unknown)
    try:
        return TrainConfig.from_dict({k: v for k, v in raw.items() if k in known})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: its training config does not load: {e}") from None


def _priors_run(config: dict[str, Any]) -> str | None:
    """The prior run a checkpoint trained with: its ``priors`` record (null: none); older checkpoints
    without that record name it in the training config."""
    if "priors" in config:
        record = config["priors"]
        return str(record["run"]) if isinstance(record, dict) and record.get("run") else None
    legacy = (config.get("train") or {}).get("priors_run")
    return str(legacy) if legacy else None


def read_checkpoint(
    path: str | os.PathLike[str],
    *,
    dataset: str | os.PathLike[str] | None = None,
    card_overrides: Mapping[str, Any] | None = None,
    card: DatasetCard | None = None,
) -> Checkpoint:
    """Read a checkpoint: THE reader every inference entry uses (``config.json`` is read once here).

    Args:
        path: a checkpoint folder, a run's ``best`` / ``last``, or a run folder (its best checkpoint,
            else its last; see :func:`resolve_checkpoint`).
        dataset: evaluate on this card instead of the checkpoint's (name or YAML path); the training
            run's card overrides still apply.
        card_overrides: dataset-card overrides applied after the training run's.
        card: a card already loaded; it is the checkpoint's card as is (``dataset`` and
            ``card_overrides`` are then not used).
    Raises:
        FileNotFoundError: no checkpoint there. ValueError: another format, or configs that do not load.
    """
    folder = resolve_checkpoint(path)
    config = read_checkpoint_config(folder)
    where = folder / "config.json"
    train = _typed_train(config, where)
    try:
        model = ModelConfig.from_dict(config["model"])
        loss = LossConfig.from_dict(config.get("loss") or {})
    except KeyError as e:
        raise ValueError(f"{where}: no {e} config") from None
    raw_train = config.get("train") or {}
    names = (
        [str(dataset)]
        if dataset is not None
        else [n for n in (raw_train.get("dataset"), config.get("dataset")) if n]
    )
    return Checkpoint(
        folder=folder,
        train=train,
        model=model,
        loss=loss,
        priors_run=_priors_run(config),
        epoch=config.get("epoch"),
        step=config.get("step"),
        metrics=config.get("metrics"),
        datasets=tuple(str(n) for n in names),
        card_overrides={**(raw_train.get("card") or {}), **(card_overrides or {})},
        config=config,
        _card=card,
    )


def load_checkpoint(
    folder: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[MasraModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint folder in eval mode; returns (model, config dict).

    The config dict holds ``dataset``, ``model``, ``loss``, ``train``, ``epoch``, ``step`` and
    ``metrics``; :func:`read_checkpoint` gives them typed.
    """
    ckpt = read_checkpoint(folder)
    return ckpt.build_model(device), ckpt.config
