"""The shell commands that README.md and docs/*.md print, read from their fenced code blocks.

A command is a line of a fenced block (no info string, ``bash``, ``sh``, ``shell`` or ``console``)
that starts with ``masra``, ``make`` or ``accelerate launch``, with ``\\`` continuations joined and a
trailing ``# comment`` dropped. Docs write optional parts as ``[--flag X]`` and alternatives as
``a|b``: :func:`concrete` keeps the command without its optional parts and with the first
alternative, which is the form the tests parse and run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
STARTS = ("masra ", "make ", "accelerate launch ")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class DocCommand:
    """One printed command: where it is and its words."""

    where: str  # "docs/training.md:7"
    text: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# ...`` comment outside quotes."""
    quote = ""
    for i, ch in enumerate(line):
        if ch in "\"'" and (not quote or quote == ch):
            quote = "" if quote else ch
        elif ch == "#" and not quote and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def doc_commands(files: list[Path] | None = None) -> list[DocCommand]:
    """Every command of the fenced shell blocks of ``files`` (default: README.md and docs/*.md)."""
    out = []
    for path in files or DOC_FILES:
        fence, lang, pending, start = "", "", "", 0
        for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = FENCE.match(raw)
            if m and (not fence or raw.strip().startswith(fence)):
                fence, lang = ("", "") if fence else (m.group(1), m.group(2))
                continue
            if not fence or lang not in SHELL_FENCES:
                continue
            line = _strip_comment(raw.strip().removeprefix("$ "))
            if pending:
                line, pending = pending + " " + line, ""
            elif not line.startswith(STARTS) or any(c in line for c in "─┘┐└┌"):
                continue  # not a command, or a line of a drawn diagram
            else:
                start = no
            if line.endswith("\\"):
                pending = line[:-1].rstrip()
                continue
            label = f"{path.relative_to(REPO).as_posix()}:{start}"
            out.append(DocCommand(label, line))
    return out


def concrete(words: list[str]) -> list[str]:
    """The words without ``[optional]`` parts, each ``a|b`` alternative reduced to ``a``."""
    out, depth = [], 0
    for w in words:
        opens, closes = w.count("["), w.count("]")
        if depth == 0 and opens == 0:
            out.append(w.split("|")[0] if "|" in w and not w.startswith(("http", "|")) else w)
        depth += opens - closes
    return out
