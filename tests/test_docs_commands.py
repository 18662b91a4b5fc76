"""The commands in README.md, docs/*.md and .ci/run match the code, checked without running any work.

Commands are read from shell-like fenced blocks (no info string, ``bash``, ``sh``, ``shell``,
``console``, ``text``; a comment that starts with a command, e.g. ``# = masra train ...``, counts
too, and ``# or --flag ...`` adds to the command before it) and from inline code spans that start
with a command. Checked:

- ``masra ...`` (also ``python -m masra.pipelines[.cli]`` and ``accelerate launch ... -m ...``): the
  group/subcommand path resolves in the click CLI and every option exists on that command; values of
  ``click.Choice`` options (``a|b`` alternatives each) are valid choices; ``--dataset NAME`` is a
  shipped card and each ``--split`` one of its splits.
- ``make TARGET [VAR=VALUE]``: the target is a rule of the Makefile and VAR a Makefile variable
  (``DATASET`` a shipped card).
- ``python -m bench.X ...``, ``bench/X.py ...``, ``scripts/X.py ...``: the module or file exists and
  every flag is one of its argparse parser's, spelled in full (the parser comes from
  the module's ``build_parser()``, so nothing runs; ``--help`` in a subprocess is the fallback for a
  module without one).
- ``--set KEY=VALUE`` on ``masra train`` / ``masra ablate`` / ``bench.priors``: KEY is a TrainConfig
  field (``model.*``, ``loss.*``, ``postprocess.*`` sub-fields of their configs, ``card.*`` a card
  key); on the other commands KEY is a dataset-card key (``priors.*`` one of the card's prior
  settings).

Placeholders are tolerated: ``<run>``, ``...``, ``$VAR``, ``{x}``, ``key=value`` and upper-case words
such as ``NAME`` or ``DIR``. A failure names the file and line of each broken command.

Also checked: source paths (``masra/...``, ``tests/...``, ...), ``masra.*`` names and
``LossConfig.w_sge``-style fields in inline code, ``masra`` imports of Python blocks, the keys of a
``priors:`` YAML block and relative links exist; every CLI command is shown somewhere; the targets
of ``make help`` are real and in the README, and .ci/run runs a command the README shows; the
configuration table of docs/training.md names every TrainConfig field with its default, and the card
table of docs/datasets.md every DatasetCard field.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FILES = [REPO / ".ci" / "run"]
SHELL_FENCES = {"", "bash", "sh", "shell", "console", "text"}
INTERPRETERS = {"python", "python3", "bash", "sh"}
SEPARATORS = {"|", "||", "&&", ";"}
RUNNERS = {"env", "nice", "time"}  # words that may precede a command in a span
MASRA_MODULES = {"masra.pipelines", "masra.pipelines.cli"}
TRAIN_SET_COMMANDS = {("train",), ("ablate",)}  # their --set keys are TrainConfig keys
TRAIN_SET_MODULES = {"bench.priors"}
SCRIPT = re.compile(r"^(?:\./)?(?:bench|scripts)/[\w/]+\.(?:py|sh)$")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)


@dataclass(frozen=True)
class Command:
    """One command found in a document: where it is, its text and its shell words."""

    where: str  # "docs/training.md:8"
    text: str
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class OptSpec:
    """What the checks need to know of one option."""

    takes_value: bool
    choices: tuple[str, ...] | None = None
    required: str | None = None  # for a required option: the name of its parameter
    many: bool = False  # takes every following word up to the next option (argparse nargs + or *)


# --------------------------------------------------------------------------- extraction


def _is_placeholder(token: str) -> bool:
    """``<run>``, ``...``, ``$VAR``, ``{x}``, ``NAME``, ``KEY=VALUE``: text a reader replaces."""
    return (
        any(c in token for c in "<>{}$…")
        or "..." in token
        or bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(=[A-Z][A-Z0-9_]*)?", token))
    )


def _words(text: str) -> list[str]:
    """Shell words of ``text``; ``<a b>`` stays one word, brackets and parens of usage lines go."""
    text = re.sub(r"<[^<>\n]*>", lambda m: m.group(0).replace(" ", "_"), text)
    try:
        words = shlex.split(text)
    except ValueError:  # an unbalanced quote in prose-like text
        words = text.split()
    return [w.strip("[]()") for w in words if w.strip("[]()")]


def _split_comment(line: str) -> tuple[str, str]:
    """``code  # comment`` -> (code, comment); a ``#`` inside quotes or a word is not a comment."""
    quote = ""
    for i, c in enumerate(line):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1 :]
    return line, ""


def _is_interpreter(word: str) -> bool:
    return word in INTERPRETERS or word.endswith(("/python", "/python3"))


def _starts_command(words: list[str], i: int) -> bool:
    w = words[i]
    nxt = words[i + 1] if i + 1 < len(words) else ""
    return (
        w in ("masra", "make")
        or w.endswith("/masra")
        or (_is_interpreter(w) and (nxt == "-m" or bool(SCRIPT.match(nxt))))
        or (w == "accelerate" and nxt == "launch")
        or (bool(SCRIPT.match(w)) and not (i > 0 and _is_interpreter(words[i - 1])))
    )


def _split_commands(words: list[str]) -> list[list[str]]:
    """The commands in a list of words: each runs from a command word to the next one or to ``;``,
    ``&&`` or ``||`` (a lone ``|`` stays: in usage lines it separates alternatives)."""
    out: list[list[str]] = []
    current: list[str] | None = None
    for i, w in enumerate(words):
        if _starts_command(words, i):
            current = [w]
            out.append(current)
        elif w in SEPARATORS - {"|"}:
            current = None
        elif current is not None:
            current.append(w)
    return out


def _pipe_is_alternative(text: str, pos: int) -> bool:
    before = text[:pos]
    return before.count("[") + before.count("(") > before.count("]") + before.count(")")


def _commands_in_code_line(text: str, where: str) -> list[Command]:
    code, comment = _split_comment(text.strip().removeprefix("$ "))
    # A shell pipe ends a command; `a | b` inside a usage list's brackets does not.
    parts, start = [], 0
    for m in re.finditer(r"(?<!\S)(?:\|\|?|&&)(?!\S)|;", code):
        if m.group(0) == "|" and _pipe_is_alternative(code, m.start()):
            continue
        parts.append(code[start : m.start()])
        start = m.end()
    parts.append(code[start:])
    found = [Command(where, " ".join(c), tuple(c)) for part in parts for c in _split_commands(_words(part))]
    words = _words(comment)
    if words[:1] == ["="]:
        words = words[1:]
    if words and _starts_command(words, 0):
        found += [Command(where, " ".join(c), tuple(c)) for c in _split_commands(words)]
    elif len(words) > 1 and words[0] == "or" and words[1].startswith("-") and found:
        last = found.pop()  # "# or --video clip.mp4": another option of the same command
        found.append(
            Command(last.where, f"{last.text} {' '.join(words[1:])}", last.tokens + tuple(words[1:]))
        )
    return found


@dataclass(frozen=True)
class Block:
    """A fenced block: its info string, the line number of its first content line, its lines."""

    info: str
    first: int
    lines: tuple[str, ...]


def split_markdown(text: str) -> tuple[list[Block], str]:
    """The fenced blocks of a document, and its other text with fenced lines blanked (so that line
    numbers stay those of the file)."""
    lines = text.splitlines()
    prose = list(lines)
    blocks: list[Block] = []
    open_fence: tuple[str, str, int] | None = None  # marker, info, line number of the opening
    for n, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if open_fence is None and m:
            open_fence = (m.group(1), m.group(2).lower(), n)
        elif open_fence is not None and re.fullmatch(rf"\s*{re.escape(open_fence[0][0])}{{3,}}\s*", line):
            _, info, start = open_fence
            blocks.append(Block(info, start + 1, tuple(lines[start : n - 1])))
            open_fence = None
        elif open_fence is None:
            continue
        prose[n - 1] = ""
    return blocks, "\n".join(prose)


def inline_spans(prose: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each inline code span; a span may wrap lines but not a paragraph."""
    for m in INLINE.finditer(prose):
        if "\n\n" not in m.group(2):
            yield prose.count("\n", 0, m.start()) + 1, " ".join(m.group(2).split())


def commands_in_markdown(text: str, label: str) -> list[Command]:
    """Every command in shell-like fenced blocks and in inline code spans that start with one."""
    blocks, prose = split_markdown(text)
    found: list[Command] = []
    for block in blocks:
        if block.info not in SHELL_FENCES:
            continue
        # Logical lines: a line continued after a backslash, or an indented usage line that goes
        # on with options, joins the line before it.
        logical: list[list[Any]] = []  # [line number, text]
        continued = False
        for n, line in enumerate(block.lines, block.first):
            if continued or (logical and re.match(r"\s+[\[(]*-", line)):
                logical[-1][1] += " " + line
            else:
                logical.append([n, line])
            continued = line.rstrip().endswith("\\")
            if continued:
                logical[-1][1] = logical[-1][1].rstrip()[:-1]
        for start, body in logical:
            found += _commands_in_code_line(body, f"{label}:{start}")
    for n, span in inline_spans(prose):
        words = _words(span)
        # A span is a command when it starts with one, after any `VAR=value`, `env`, `nice` or `time`.
        lead = 0
        while lead < len(words) - 1 and (words[lead] in RUNNERS or re.fullmatch(r"\w+=\S*", words[lead])):
            lead += 1
        if words and _starts_command(words, lead):
            found += [Command(f"{label}:{n}", " ".join(c), tuple(c)) for c in _split_commands(words[lead:])]
    return found


def commands_in_shell_file(text: str, label: str) -> list[Command]:
    found: list[Command] = []
    for n, line in enumerate(text.splitlines(), 1):
        found += _commands_in_code_line(line, f"{label}:{n}")
    return found


# --------------------------------------------------------------------------- the code's side


@functools.cache
def _cli() -> click.Group:
    from masra.pipelines.cli import main

    return main


def _click_specs(cmd: click.Command, ctx: click.Context) -> dict[str, OptSpec]:
    specs: dict[str, OptSpec] = {}
    for p in cmd.get_params(ctx):
        if not isinstance(p, click.Option):
            continue
        choices = tuple(str(c) for c in p.type.choices) if isinstance(p.type, click.Choice) else None
        for name in p.opts:
            specs[name] = OptSpec(
                takes_value=not (p.is_flag or p.count),
                choices=choices,
                required=p.name if p.required else None,
            )
        for name in p.secondary_opts:
            specs[name] = OptSpec(takes_value=False)
    return specs


def _argparse_specs(parser: argparse.ArgumentParser) -> dict[str, OptSpec]:
    return {
        name: OptSpec(
            takes_value=action.nargs != 0,
            choices=tuple(str(c) for c in action.choices) if action.choices else None,
            required=action.dest if action.required else None,
            many=action.nargs in ("+", "*"),
        )
        for name, action in parser._option_string_actions.items()
    }


def _parser_of(module: Any) -> argparse.ArgumentParser | None:
    """The module's argparse parser, from its ``build_parser()`` (every bench module and script has one)."""
    build = getattr(module, "build_parser", None)
    if not callable(build):
        return None
    parser = build()
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


@functools.cache
def _module_specs(name: str) -> dict[str, OptSpec] | str:
    """Options of ``python -m name``, or why they cannot be read."""
    if importlib.util.find_spec(name) is None:
        return f"no module {name}"
    parser = _parser_of(importlib.import_module(name))
    if parser is not None:
        return _argparse_specs(parser)
    return _help_specs([sys.executable, "-m", name])


@functools.cache
def _script_specs(rel: str) -> dict[str, OptSpec] | str:
    path = REPO / rel.removeprefix("./")
    if not path.is_file():
        return f"no file {rel}"
    if path.suffix != ".py":
        return {}  # a shell script: only its existence is checked
    if path.parent.name == "bench":
        return _module_specs(f"bench.{path.stem}")
    spec = importlib.util.spec_from_file_location(f"_doc_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = _parser_of(module)
    return _argparse_specs(parser) if parser is not None else _help_specs([sys.executable, str(path)])


def _help_specs(argv: list[str]) -> dict[str, OptSpec] | str:
    """Fallback for a program whose parser cannot be caught: the flags its ``--help`` lists."""
    run = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
    if run.returncode != 0:
        return f"`{' '.join(argv[1:])} --help` failed: {run.stderr.strip()[-300:]}"
    # Without the parser, whether a flag takes a value is unknown; assume it does not.
    return {f: OptSpec(takes_value=False) for f in re.findall(r"(?<![\w-])--?[\w][\w-]*", run.stdout)}


@functools.cache
def _make_rules() -> tuple[frozenset[str], frozenset[str]]:
    """The Makefile's explicit targets and the variables it sets or reads."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    targets: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"^([^\s:=#$][^:=#]*?)\s*::?(?!=)", line)
        if m:
            targets.update(t for t in m.group(1).split() if not t.startswith(".") and "%" not in t)
    variables = set(re.findall(r"\$\((\w+)\)", text)) | set(
        re.findall(r"^(?:export\s+)?(\w+)\s*[?:+]?=", text, re.M)
    )
    return frozenset(targets), frozenset(variables)


def _help_targets() -> list[str]:
    """Target names listed by the Makefile's ``help`` rule."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    m = re.search(r"^help:.*\n((?:\t.*\n)+)", text, re.M)
    if not m:
        return []
    echoed = re.sub(r"\[.*?\]|\$\(\w+\)", " ", m.group(1))
    return [w for w in re.findall(r"[\w-]+", echoed) if w not in ("echo", "make")]


@functools.cache
def _train_keys() -> dict[str, frozenset[str] | None]:
    """TrainConfig fields; for mapping fields, the known sub-keys (None: any)."""
    from masra.grounding.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig

    subs: dict[str, Any] = {"model": ModelConfig, "loss": LossConfig, "postprocess": PostprocessConfig}
    return {
        f.name: frozenset(g.name for g in fields(subs[f.name])) if f.name in subs else None
        for f in fields(TrainConfig)
    }


@functools.cache
def _card_keys() -> frozenset[str]:
    """DatasetCard fields and the top-level keys of the shipped cards (``priors``, ``text_encoder``)."""
    from masra.datasets.card import DatasetCard

    keys = {f.name for f in fields(DatasetCard)} - {"extra"}
    for card in (REPO / "data" / "datasets").glob("*.yaml"):
        keys |= set(yaml.safe_load(card.read_text(encoding="utf-8")) or {})
    return frozenset(keys)


def _card_key_problem(key: str) -> str | None:
    head, _, rest = key.partition(".")
    if head not in _card_keys():
        return f"--set {key}: {head!r} is not a dataset-card key (known: {', '.join(sorted(_card_keys()))})"
    if head == "priors" and rest:
        from masra.pipelines.cli_priors import _CARD_KEYS

        sub = rest.split(".")[0]
        if sub not in _CARD_KEYS:
            return (
                f"--set {key}: {sub!r} is not a card prior setting (known: {', '.join(sorted(_CARD_KEYS))})"
            )
    return None


def _train_key_problem(key: str) -> str | None:
    head, _, rest = key.partition(".")
    if head == "card" and rest:
        return _card_key_problem(rest)
    keys = _train_keys()
    if head not in keys:
        return f"--set {key}: {head!r} is not a TrainConfig key (known: {', '.join(sorted(keys))})"
    sub = rest.split(".")[0]
    known = keys[head]
    if rest and known is not None and sub not in known:
        return f"--set {key}: {sub!r} is not a field of {head} (known: {', '.join(sorted(known))})"
    return None


# --------------------------------------------------------------------------- checks


def _check_options(
    words: list[str], specs: dict[str, OptSpec], label: str, *, stop_at_positional: bool = False
) -> tuple[list[str], list[tuple[str, str]], int]:
    """Problems with the options in ``words``, the (option, value) pairs read, and where reading
    stopped (``stop_at_positional``: at the first word that is not an option or its value)."""
    problems: list[str] = []
    values: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "--":
            break
        if not w.startswith("-") or w == "-" or re.fullmatch(r"-\d.*", w) or _is_placeholder(w.split("=")[0]):
            if stop_at_positional:
                break
            i += 1
            continue
        name, eq, value = w.partition("=") if w.startswith("--") else (w, "", "")
        if re.fullmatch(r"-([a-zA-Z])\1+", name):  # -vv: a counted short flag
            name = name[:2]
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(n for n in specs if n.startswith("--")))
            problems.append(f"unknown option {name} for `{label}` (known: {known})")
            i += 1
            continue
        given = [value] if eq else []
        while spec.takes_value and i + 1 < len(words) and (not given or spec.many) and not eq:
            if words[i + 1].startswith("-") and given:
                break
            given.append(words[i + 1])
            i += 1
        for value in given:
            values.append((name, value))
            if spec.choices is not None and not _is_placeholder(value):
                bad = [v for v in value.split("|") if v not in spec.choices]
                if bad:
                    problems.append(
                        f"{name} {value}: {', '.join(bad)} not in {list(spec.choices)} (`{label}`)"
                    )
        i += 1
    return problems, values, i


def _missing_required(words: list[str], specs: dict[str, OptSpec], label: str) -> list[str]:
    """Required options absent from a command that names options (a bare ``masra eval`` in prose
    refers to the command; ``...`` may stand for anything)."""
    if "..." in words or not any(w.startswith("-") for w in words):
        return []
    given = {specs[n].required for w in words if (n := w.split("=")[0]) in specs}
    missing = {s.required for s in specs.values() if s.required} - given
    names = sorted(max((n for n, s in specs.items() if s.required == m), key=len) for m in missing)
    return [f"`{label}` needs {n}" for n in names]


def _set_key_problems(values: list[tuple[str, str]], train: bool) -> list[str]:
    problems = []
    for name, value in values:
        if name != "--set" or "=" not in value:
            continue
        key = value.split("=", 1)[0]
        if _is_placeholder(key) or key in ("key", "KEY"):
            continue
        problem = _train_key_problem(key) if train else _card_key_problem(key)
        if problem:
            problems.append(problem)
    return problems


@functools.cache
def _shipped_card(name: str) -> dict[str, Any] | None:
    path = REPO / "data" / "datasets" / f"{name}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def _dataset_problems(values: list[tuple[str, str]]) -> list[str]:
    """``--dataset NAME`` names a shipped card, and each ``--split`` is one of its splits."""
    names = [v for o, v in values if o in ("--dataset", "-d")]
    if len(names) != 1 or _is_placeholder(names[0]) or not re.fullmatch(r"[\w-]+", names[0]):
        return []  # no dataset (a checkpoint's), a card path, or a placeholder
    card = _shipped_card(names[0])
    if card is None:
        return [f"--dataset {names[0]}: no card data/datasets/{names[0]}.yaml"]
    splits = sorted(card.get("annotations") or {})
    return [
        f"--split {v}: the {names[0]} card has no split {v!r} (splits: {', '.join(splits)})"
        for o, v in values
        if o in ("--split", "-s") and not _is_placeholder(v) and v not in splits
    ]


def check_masra(args: list[str], found: set[tuple[str, ...]] | None = None) -> list[str]:
    """Resolve ``masra ARGS``' command path and check its options; record the path in ``found``."""
    cmd: click.Command = _cli()
    path: list[str] = []
    ctx = cmd.make_context("masra", [], resilient_parsing=True)
    i = 0
    while isinstance(cmd, click.Group):
        if i >= len(args) or _is_placeholder(args[i]):
            return []
        w = args[i]
        if w.startswith("-"):  # an option of the group itself, e.g. masra -v train
            problems, _, used = _check_options(
                args[i:], _click_specs(cmd, ctx), " ".join(["masra", *path]), stop_at_positional=True
            )
            if problems:
                return problems
            i += max(used, 1)
            continue
        sub = cmd.get_command(ctx, w)
        if sub is None:
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", w):
                return []  # not a command word (a diagram arrow, prose)
            names = ", ".join(cmd.list_commands(ctx))
            return [f"no command {w!r} in `{' '.join(['masra', *path])}` (commands: {names})"]
        path.append(w)
        ctx = sub.make_context(w, [], parent=ctx, resilient_parsing=True)
        cmd = sub
        i += 1
    if found is not None:
        found.add(tuple(path))
    label = " ".join(["masra", *path])
    specs = _click_specs(cmd, ctx)
    problems, values, _ = _check_options(args[i:], specs, label)
    return (
        problems
        + _missing_required(args[i:], specs, label)
        + _set_key_problems(values, train=tuple(path) in TRAIN_SET_COMMANDS)
        + _dataset_problems(values)
    )


def check_make(args: list[str]) -> list[str]:
    targets, variables = _make_rules()
    problems = []
    for w in args:
        if w.startswith("-") or _is_placeholder(w):
            continue
        if "=" in w:
            var, value = w.split("=", 1)
            if var not in variables:
                problems.append(f"make variable {var} is not used by the Makefile")
            elif var == "DATASET" and not _is_placeholder(value) and _shipped_card(value) is None:
                problems.append(f"DATASET={value}: no card data/datasets/{value}.yaml")
        elif w not in targets:
            problems.append(f"no make target {w!r} (targets: {', '.join(sorted(targets))})")
    return problems


def check_module(args: list[str], found: set[tuple[str, ...]] | None = None) -> list[str]:
    """``python -m MODULE ARGS`` for this repository's modules (others, e.g. pip, are not checked)."""
    if not args or _is_placeholder(args[0]):
        return []
    name, rest = args[0], args[1:]
    if name in MASRA_MODULES:
        return check_masra(rest, found)
    if name.split(".")[0] not in ("masra", "bench", "scripts"):
        return []
    specs = _module_specs(name)
    if isinstance(specs, str):
        return [specs]
    problems, values, _ = _check_options(rest, specs, f"python -m {name}")
    problems += _missing_required(rest, specs, f"python -m {name}")
    return problems + _set_key_problems(values, train=name in TRAIN_SET_MODULES)


def check_script(args: list[str], interpreter: str | None = None) -> list[str]:
    """``[python|bash] bench/X.py ARGS`` / ``scripts/X.py ARGS`` / ``bench/X.sh``: the file exists and
    takes the flags; a module of a package given arguments must be run with ``-m`` (run by path, its
    imports fail); without an interpreter, a file given arguments must be executable with a ``#!``."""
    specs = _script_specs(args[0])
    if isinstance(specs, str):
        return [specs]
    path = REPO / args[0].removeprefix("./")
    if len(args) > 1 and path.suffix == ".py" and (path.parent / "__init__.py").is_file():
        module = f"{path.parent.name}.{path.stem}"
        return [f"{args[0]} is a module of a package (run by path, its imports fail): `python -m {module}`"]
    if len(args) > 1 and not interpreter:
        with open(path, "rb") as f:
            shebang = f.read(2) == b"#!"
        if not (shebang and os.access(path, os.X_OK)):
            runner = "python" if path.suffix == ".py" else "bash"
            return [f"{args[0]} is not an executable script: `{runner} {args[0]}`"]
    if not specs:
        return []
    name = f"bench.{Path(args[0]).stem}" if Path(args[0]).parent.name == "bench" else ""
    problems, values, _ = _check_options(args[1:], specs, args[0])
    problems += _missing_required(args[1:], specs, args[0])
    return problems + _set_key_problems(values, train=name in TRAIN_SET_MODULES)


@functools.cache
def _accelerate_specs() -> dict[str, OptSpec]:
    from accelerate.commands.launch import launch_command_parser

    return _argparse_specs(launch_command_parser())


def check_accelerate(args: list[str], found: set[tuple[str, ...]] | None = None) -> list[str]:
    """``accelerate launch [OPTIONS] (-m MODULE | SCRIPT) ARGS``: the launcher's options, then the program."""
    problems, _, used = _check_options(
        args, _accelerate_specs(), "accelerate launch", stop_at_positional=True
    )
    rest = args[used:]
    if not rest:
        return problems
    as_module = any(w in ("-m", "--module") for w in args[:used])
    return problems + (
        check_module(rest, found) if as_module else check_script(rest) if SCRIPT.match(rest[0]) else []
    )


def problems_of(cmd: Command, found: set[tuple[str, ...]] | None = None) -> list[str]:
    """Everything wrong with one documented command, as ``file:line: `command`: problem`` lines."""
    head, args = cmd.tokens[0], list(cmd.tokens[1:])
    if head == "make":
        problems = check_make(args)
    elif head == "masra" or head.endswith("/masra"):
        problems = check_masra(args, found)
    elif head == "accelerate":
        problems = check_accelerate(args[1:], found)
    elif SCRIPT.match(head):
        problems = check_script([head, *args])
    elif args and args[0] != "-m":  # python SCRIPT ARGS, bash SCRIPT ARGS
        problems = check_script(args, interpreter=head)
    else:  # python -m MODULE ARGS
        problems = check_module(args[1:], found)
    return [f"{cmd.where}: `{cmd.text}`: {p}" for p in problems]


def _doc_commands(path: Path) -> list[Command]:
    label = path.relative_to(REPO).as_posix()
    text = path.read_text(encoding="utf-8")
    return commands_in_shell_file(text, label) if path in SHELL_FILES else commands_in_markdown(text, label)


# --------------------------------------------------------------------------- names and paths

SOURCE_PATH = re.compile(
    r"^(?:masra|tests|bench|scripts|configs|docs|requirements|data/datasets|\.ci)/[\w./-]*$"
)
DOTTED = re.compile(r"^masra(?:\.\w+)+")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _resolve(dotted: str) -> str | None:
    """None when ``masra.a.b.name`` names a module or an attribute of one, else why not."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and not module_name.startswith(e.name):
                raise  # the module exists but imports something missing: not a doc problem
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return f"{dotted}: {type(obj).__name__} {'.'.join(parts[:cut])} has no {attr!r}"
            obj = getattr(obj, attr)
        return None
    return f"{dotted}: no such module"


CLASS_ATTR = re.compile(r"^([A-Z]\w+)\.(\w+)$")
CLASSES = {  # classes the docs name as `Class.attribute`, and where they live
    "LossConfig": "masra.grounding.config",
    "ModelConfig": "masra.grounding.config",
    "TrainConfig": "masra.grounding.config",
    "PostprocessConfig": "masra.grounding.config",
    "DatasetCard": "masra.datasets.card",
    "FeatureStore": "masra.datasets.store",
    "Grounder": "masra.grounding.infer.grounder",
}


def _class_attr_problem(name: str, attr: str) -> str | None:
    """None when ``Class.attr`` is a field or attribute of a known class (other classes: not checked)."""
    if name not in CLASSES:
        return None
    cls = getattr(importlib.import_module(CLASSES[name]), name)
    known = set(dir(cls)) | {f.name for f in fields(cls)} if is_dataclass(cls) else set(dir(cls))
    return None if attr in known else f"{name} has no field or attribute {attr!r}"


def _name_problem(text: str) -> str | None:
    """Why a ``masra.x.y`` or ``Class.attr`` name does not exist; None when it does or is neither."""
    if dotted := DOTTED.match(text):
        return _resolve(dotted.group(0))
    if m := CLASS_ATTR.match(text):
        return _class_attr_problem(*m.groups())
    return None


def _python_block_problems(block: Block, label: str) -> list[str]:
    """``from masra.x import a, b`` / ``import masra.x`` lines of a Python block resolve."""
    problems = []
    for n, line in enumerate(block.lines, block.first):
        m = re.match(r"\s*from\s+(masra[\w.]*)\s+import\s+(.+)", line)
        imported = [x.split(" as ")[0].strip() for x in m.group(2).strip("()\\ ").split(",")] if m else []
        names = [f"{m.group(1)}.{x}" for x in imported if x] if m else []
        m = re.match(r"\s*import\s+(masra[\w.]*)", line)
        names += [m.group(1)] if m else []
        problems += [f"{label}:{n}: {p}" for name in names if (p := _resolve(name))]
    return problems


def _yaml_block_problems(block: Block, label: str) -> list[str]:
    """A YAML block's ``priors:`` mapping (a card's stage-1 settings) uses known keys only."""
    from masra.pipelines.cli_priors import _CARD_KEYS

    data = yaml.safe_load("\n".join(block.lines))
    settings = data.get("priors") if isinstance(data, dict) else None
    if not isinstance(settings, dict):
        return []
    unknown = sorted(set(settings) - _CARD_KEYS)
    return (
        [f"{label}:{block.first}: card prior settings {unknown} unknown (known: {sorted(_CARD_KEYS)})"]
        if unknown
        else []
    )


def reference_problems(text: str, label: str, doc_dir: Path) -> list[str]:
    """Source paths and ``masra.*`` names in inline code, imports in Python blocks, and relative
    Markdown links of a document exist."""
    blocks, prose = split_markdown(text)
    problems: list[str] = []
    for block in blocks:
        if block.info == "python":
            problems += _python_block_problems(block, label)
        elif block.info == "yaml":
            problems += _yaml_block_problems(block, label)
    for n, span in inline_spans(prose):
        head = span.split(" ")[0].split("(")[0].rstrip(".,:;")
        if SOURCE_PATH.match(head) and not _is_placeholder(head) and "*" not in head:
            if not (REPO / head).exists():
                problems.append(f"{label}:{n}: `{span}`: no file or folder {head}")
        elif problem := _name_problem(head):
            problems.append(f"{label}:{n}: `{span}`: {problem}")
    for n, line in enumerate(prose.splitlines(), 1):
        for target in LINK.findall(line):
            path = target.split("#")[0]
            if path and "://" not in target and not (doc_dir / path).exists():
                problems.append(f"{label}:{n}: link to {target}: no such file")
    return problems


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", DOC_FILES + SHELL_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_documented_commands_match_the_code(path: Path) -> None:
    commands = _doc_commands(path)
    problems = [p for c in commands for p in problems_of(c)]
    assert not problems, "documented commands that do not match the code:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_documented_paths_and_names_exist(path: Path) -> None:
    label = path.relative_to(REPO).as_posix()
    problems = reference_problems(path.read_text(encoding="utf-8"), label, path.parent)
    assert not problems, "documented files, names or links that do not exist:\n" + "\n".join(problems)


def _doc_value(text: str) -> Any:
    """A default as the docs write it: ``null``, ``true``, ``1e-4``, ``MR-full-mAP``."""
    text = text.strip().strip("`")
    if text in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[text]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def test_training_config_table_matches_train_config() -> None:
    """docs/training.md's configuration table names every TrainConfig field, and its defaults are the
    dataclass defaults (``card`` marks a default taken from the dataset card)."""
    from masra.grounding.config import PostprocessConfig, TrainConfig

    text = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    defaults |= {f"postprocess.{f.name}": f.default for f in fields(PostprocessConfig)}
    documented: set[str] = set()
    problems = []
    for row in re.findall(r"^\| (`.*?) \| (.*?) \|", table, re.M):
        names = re.findall(r"`([\w.*]+)`", row[0])
        names = [f"{names[0].split('.')[0]}{n}" if n.startswith(".") else n for n in names]
        documented |= set(names)
        values = [v for v in row[1].split(",") if v.strip()]
        if len(values) != len(names):
            continue  # `model.*`: no single default
        for name, value in zip(names, values, strict=True):
            doc, code = _doc_value(value), defaults.get(name)
            if doc != "card" and doc != code:
                problems.append(f"{name}: the table says {doc!r}, TrainConfig has {code!r}")
    heads = {n.split(".")[0] for n in documented}
    missing = sorted({f.name for f in fields(TrainConfig)} - heads - {"dataset"})  # dataset: --dataset
    assert not missing, f"TrainConfig fields missing from docs/training.md's table: {missing}"
    assert not problems, problems


def test_card_table_names_every_card_field() -> None:
    """docs/datasets.md's table of card keys names every DatasetCard field."""
    from masra.datasets.card import DatasetCard

    text = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    table = text.split("## Dataset cards", 1)[1].split("\n#", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    missing = sorted({f.name for f in fields(DatasetCard)} - {"extra"} - documented)
    assert not missing, f"DatasetCard fields missing from docs/datasets.md's table: {missing}"


def _leaf_paths(
    cmd: click.Command, ctx: click.Context, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    if not isinstance(cmd, click.Group):
        yield path
        return
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        assert sub is not None
        yield from _leaf_paths(
            sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True), (*path, name)
        )


def test_every_cli_command_is_documented() -> None:
    """Each leaf command of the CLI appears, resolved, in some document (this also shows that the
    extraction reaches the commands at all)."""
    found: set[tuple[str, ...]] = set()
    for path in DOC_FILES:
        for cmd in _doc_commands(path):
            problems_of(cmd, found)
    root = _cli()
    leaves = set(_leaf_paths(root, root.make_context("masra", [], resilient_parsing=True)))
    missing = sorted(" ".join(("masra", *p)) for p in leaves - found)
    assert not missing, f"CLI commands no document shows: {missing}"


def test_make_help_and_ci_agree_with_the_readme() -> None:
    """The targets ``make help`` lists are real and in the README; .ci/run runs README commands."""
    readme = _doc_commands(REPO / "README.md")
    readme_targets = {w for c in readme if c.tokens[0] == "make" for w in c.tokens[1:] if "=" not in w}
    names = _help_targets()
    assert "demo" in names and "test" in names, f"`make help` not read: {names}"
    targets, _ = _make_rules()
    assert not set(names) - targets, f"`make help` names targets the Makefile lacks: {set(names) - targets}"
    assert not set(names) - readme_targets, f"README lacks `make help` targets {set(names) - readme_targets}"
    ci = {c.tokens for path in SHELL_FILES for c in _doc_commands(path)}
    assert ci, "no command found in .ci/run"
    assert ci <= {c.tokens for c in readme}, f".ci/run runs commands the README does not show: {ci}"


BROKEN = """\
# A document with broken commands

Inline: `masra train --dataset fixture --no-such-flag`, `make no-such-target`, `bash bench/no_such.sh`.

```bash
masra trian --dataset fixture
masra priors generate --dataset fixture --backend vllm|nope
python -m bench.run --no-such-bench-flag
masra train --dataset fixture --set no_such_key=1 --set model.no_such_field=2
masra data stats --dataset fixture --split val --set rot=/data   # typo of root
make train DATASETT=fixture
masra priors report --dataset charades --split val
make eval DATASET=qvh
bench/stage1_speed.py --skip-nonref
python -m bench.stage1_speed --skip-nonref
scripts/build_tiny_models.py --out /tmp/tiny
python scripts/build_tiny_models.py --models qwen2_5_vl qwen9_vl --force
masra fixture --out DIR \\
    --no-such-fixture-flag
masra data stats --dataset fixture
                 [--split val] [--bogus]
```

```python
masra train --not-checked-in-python-blocks
```
"""

PLACEHOLDERS = """\
```bash
masra train --dataset NAME --out runs/<name> --priors <prior run> --set key=value ...
masra <command> ...
masra eval --checkpoint $CKPT --split {split}
make train DATASET=...
masra predict --checkpoint CKPT (--video-features F.npz | --vid VID) --query "..."   # or --video clip.mp4
masra priors generate --dataset charades [--backend vllm|transformers] [--shard i/N]
python -m bench.priors --seeds 5 --set epochs=40 --set card.root=/x
accelerate launch --multi_gpu --num_processes 2 -m masra.pipelines.cli train --dataset qvhighlights
python scripts/build_tiny_models.py --out /tmp/tiny --models qwen2_5_vl qwen3_vl && bash bench/gpu.sh
```
"""


def test_broken_commands_are_reported_with_file_and_line() -> None:
    problems = [p for c in commands_in_markdown(BROKEN, "broken.md") for p in problems_of(c)]
    expected = [
        ("broken.md:3:", "unknown option --no-such-flag for `masra train`"),
        ("broken.md:3:", "no make target 'no-such-target'"),
        ("broken.md:3:", "no file bench/no_such.sh"),
        ("broken.md:6:", "no command 'trian' in `masra`"),
        ("broken.md:7:", "nope not in ['vllm', 'transformers', 'openai']"),
        ("broken.md:8:", "unknown option --no-such-bench-flag for `python -m bench.run`"),
        ("broken.md:9:", "'no_such_key' is not a TrainConfig key"),
        ("broken.md:9:", "'no_such_field' is not a field of model"),
        ("broken.md:10:", "'rot' is not a dataset-card key"),
        ("broken.md:11:", "make variable DATASETT is not used"),
        ("broken.md:12:", "the charades card has no split 'val'"),
        ("broken.md:13:", "DATASET=qvh: no card"),
        ("broken.md:14:", "`python -m bench.stage1_speed`"),
        ("broken.md:15:", "`python -m bench.stage1_speed` needs --json"),
        ("broken.md:16:", "not an executable script: `python scripts/build_tiny_models.py`"),
        ("broken.md:17:", "--models qwen9_vl: qwen9_vl not in"),
        ("broken.md:18:", "unknown option --no-such-fixture-flag for `masra fixture`"),
        ("broken.md:20:", "unknown option --bogus for `masra data stats`"),
    ]
    for where, what in expected:
        assert any(p.startswith(where) and what in p for p in problems), (where, what, problems)
    assert len(problems) == len(expected), problems


def test_placeholders_and_valid_commands_pass() -> None:
    commands = commands_in_markdown(PLACEHOLDERS, "ok.md")
    assert len(commands) == 10, commands
    predict = next(c for c in commands if "predict" in c.tokens)
    assert "--video" in predict.tokens  # the "# or --video" comment joins the command
    problems = [p for c in commands for p in problems_of(c)]
    assert not problems, problems


def test_broken_references_are_reported() -> None:
    doc = """\
See `masra/no_such_module.py`, `masra.grounding.metrics.no_such_function` and [x](no-such.md).
Fine: `masra/grounding/spans.py`, `masra.grounding.metrics.evaluate_submission(...)`, `runs/<name>/`.
`LossConfig.w_sge`, `DatasetCard.extra`, `FeatureStore.open(path)`, but not `LossConfig.w_sgee`.

```python
from masra.grounding.metrics import evaluate_submission, no_such_name
from masra.grounding.spans import (
```

```yaml
priors: {model: x, fsp: 2}
```
"""
    problems = reference_problems(doc, "refs.md", REPO / "docs")
    expected = [
        ("refs.md:6:", "has no 'no_such_name'"),
        ("refs.md:11:", "card prior settings ['fsp'] unknown"),
        ("refs.md:1:", "no file or folder masra/no_such_module.py"),
        ("refs.md:1:", "has no 'no_such_function'"),
        ("refs.md:3:", "LossConfig has no field or attribute 'w_sgee'"),
        ("refs.md:1:", "link to no-such.md: no such file"),
    ]
    assert len(problems) == len(expected), problems
    for problem, (where, what) in zip(problems, expected, strict=True):
        assert problem.startswith(where) and what in problem, (problem, where, what)
