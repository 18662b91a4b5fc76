"""Filesystem steps shared by the stages: putting a finished folder in place of an old one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["swap_in_folder"]


def swap_in_folder(new: Path, final: Path, aside: Path) -> None:
    """Put the folder (or link) ``new`` at ``final``.

    A link or nothing at ``final`` is replaced in one rename. A plain folder cannot be: it is moved to
    ``aside`` first (any leftover there is removed), ``new`` is renamed into place, and ``aside`` is
    deleted, so ``final`` is missing only between two renames and never half-written.
    """
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(final, aside)
        os.replace(new, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, final)
