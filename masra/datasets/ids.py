"""The rule for video and query ids that name files.

Ids become file names (``{dir}/{vid}.npz``, ``{dir}/qid{qid}.npz``), so an id that is a path would make
the readers open files outside the data folders. :func:`id_problem` says why an id is not a bare file
name; the annotation readers reject such ids with ``file:line``. The rule is the one of the prior
importer's ``check_video_id`` (kept separate so the dataset layer does not import the prior stage).
"""

from __future__ import annotations

import os
from pathlib import PureWindowsPath

__all__ = ["id_problem"]


def id_problem(value: str, what: str = "vid") -> str | None:
    """The reason ``value`` is not a usable bare file-name id, or None when it is.

    Refused: the empty string, control characters, ``/`` or ``\\``, ``..``, a leading ``.``, an
    absolute path or a drive (``C:``), leading or trailing white space. ``what`` names the id in the
    reason (``vid``, ``qid``).
    """
    if not value:
        return f"{what} must be a non-empty string"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{what} {value!r} contains a NUL or control character"
    if "/" in value or "\\" in value:
        return f"{what} {value!r} is a path (contains '/' or '\\'); ids must be bare file names"
    if ".." in value:
        return f"{what} {value!r} contains '..'; ids must be bare file names"
    if value.startswith("."):
        return f"{what} {value!r} starts with '.'"
    if PureWindowsPath(value).drive or os.path.isabs(value):
        return f"{what} {value!r} is an absolute path"
    if value != value.strip():
        return f"{what} {value!r} has leading or trailing white space"
    return None
