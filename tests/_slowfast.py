"""Writes a SlowFast as the folder :func:`masra.features.slowfast.load_slowfast` reads
(``config.json`` + ``model.safetensors``): how the tests store their tiny random stand-ins."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from masra.features.slowfast_net import SlowFast


def save_slowfast(net: SlowFast, out: str | os.PathLike[str]) -> Path:
    """Write ``net`` as a folder: ``config.json`` + ``model.safetensors``; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(net.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors"))
    return out
