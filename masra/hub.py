"""Models named by folder or by Hugging Face id, resolved without waiting on an unreachable hub.

:func:`resolve_model` turns a model reference into something ``from_pretrained`` can load at once:

1. an existing file or folder: returned as it is;
2. a hub id (``org/name``) found in the local Hugging Face cache: its snapshot folder (so loading it
   never touches the network);
3. a hub id that is not cached: returned unchanged only when the hub answers a TCP connect within
   ``timeout`` seconds and ``HF_HUB_OFFLINE`` is not set (transformers then downloads it);
4. anything else: :class:`ModelUnavailableError` at once, with a one-line message naming the model
   and how to provide it (a folder path, or a download into the cache with network access).

Without this, ``from_pretrained`` on a machine without network retries for half a minute and ends in
a long traceback. Only the standard library is imported at module level (``huggingface_hub`` is
imported lazily and only for cache look-ups).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

__all__ = ["ModelUnavailableError", "hub_reachable", "looks_like_path", "resolve_model"]

DEFAULT_TIMEOUT = 1.5
_TRUE = {"1", "on", "yes", "true"}


class ModelUnavailableError(FileNotFoundError):
    """A model that is neither a local path nor cached, with the hub unreachable; ``str()`` is one line."""


def looks_like_path(ref: str) -> bool:
    """True when ``ref`` can only be a file-system path, never a hub id (``org/name`` or ``name``)."""
    return (
        ref.startswith(("/", "./", "../", "~", "\\"))
        or ref.count("/") > 1
        or "\\" in ref
        or Path(ref).suffix in (".pyth", ".pt", ".pth", ".pkl", ".safetensors", ".bin", ".ckpt")
    )


def _offline() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether a TCP connection to the hub endpoint (``HF_ENDPOINT``) opens within ``timeout`` seconds."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_snapshot(repo_id: str) -> str | None:
    """The local snapshot folder of ``repo_id`` in the Hugging Face cache, or None (no network)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return str(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or not a valid repo id: both mean "not here"
        return None


def resolve_model(
    ref: str | os.PathLike[str], *, what: str = "model", timeout: float = DEFAULT_TIMEOUT
) -> str:
    """A loadable reference for ``ref`` (see the module doc), or :class:`ModelUnavailableError`.

    Args:
        ref: a file, a folder or a hub id.
        what: how messages name the model, e.g. ``"CLIP image encoder of extractor clip-vit-b32"``.
        timeout: seconds to wait for the hub's TCP connect.
    """
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.exists():
        return str(path)
    if looks_like_path(text):
        raise ModelUnavailableError(f"{what} {text!r} not found: no such file or folder")
    snapshot = _cached_snapshot(text)
    if snapshot is not None:
        log.debug("%s %s found in the local Hugging Face cache: %s", what, text, snapshot)
        return snapshot
    how = (
        f"pass a folder holding its files instead of the name, or download it once with network access "
        f"(`huggingface-cli download {text}`) into the Hugging Face cache (HF_HOME) and run with HF_HUB_OFFLINE=1"
    )
    if _offline():
        raise ModelUnavailableError(
            f"{what} {text!r} is neither a folder nor in the local Hugging Face cache, and HF_HUB_OFFLINE is set: {how}"
        )
    if not hub_reachable(timeout):
        raise ModelUnavailableError(
            f"{what} {text!r} is neither a folder nor in the local Hugging Face cache, and the hub cannot be reached: {how}"
        )
    return text
