"""The commands README.md and docs/*.md print exist as printed (fast; tests/test_docs_run.py runs them).

- ``masra ...``: the subcommand resolves, every option is one of that command's, and the value of a
  choice option is a valid choice.
- ``make TARGET [VAR=VALUE]``: the target and the variables are the Makefile's.
- every CLI command is printed somewhere; ``make help``'s targets are in the README, and .ci/run
  runs the README's test command.
"""

from __future__ import annotations

import re
import subprocess

import click
import pytest
from _doc_commands import REPO, DocCommand, concrete, doc_commands

from masra.pipelines.cli import main

COMMANDS = doc_commands()
MASRA = [c for c in COMMANDS if c.words[0] == "masra"]
MAKE = [c for c in COMMANDS if c.words[0] == "make"]


def resolve(words: list[str]) -> tuple[click.Command, list[str], str]:
    """(command, its arguments, its path) of ``masra`` words, through the CLI's groups."""
    cmd: click.Command = main
    path = ["masra"]
    rest = list(words[1:])
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        if sub is None:
            raise LookupError(f"no command {' '.join([*path, rest[0]])!r}")
        cmd, path, rest = sub, [*path, rest.pop(0)], rest
    return cmd, rest, " ".join(path)


def option_problems(cmd: click.Command, args: list[str]) -> list[str]:
    """Options of ``args`` the command lacks, and choice values it refuses."""
    params = {opt: p for p in cmd.params for opt in [*p.opts, *p.secondary_opts]}
    problems = []
    for i, word in enumerate(args):
        if not word.startswith("-") or word == "-":
            continue
        name, _, inline = word.partition("=")
        param = params.get(name)
        if param is None:
            problems.append(f"no option {name}")
            continue
        value = inline or (args[i + 1] if i + 1 < len(args) else "")
        choices = getattr(param.type, "choices", None)
        if choices and not getattr(param, "is_flag", False) and value not in choices:
            problems.append(f"{name} {value!r} is not one of {list(choices)}")
    return problems


@pytest.mark.parametrize("cmd", MASRA, ids=[c.where for c in MASRA])
def test_documented_masra_command_exists(cmd: DocCommand) -> None:
    command, args, path = resolve(concrete(cmd.words))
    assert not isinstance(command, click.Group), f"{cmd.where}: `{cmd.text}` names only the group {path}"
    assert not option_problems(command, args), f"{cmd.where}: `{cmd.text}`: {option_problems(command, args)}"


def _make_database() -> str:
    return subprocess.run(
        ["make", "-pRrq", "-f", "Makefile", "__none__"], cwd=REPO, capture_output=True, text=True
    ).stdout


def test_documented_make_targets_and_variables_exist() -> None:
    db = _make_database()
    targets = set(re.findall(r"^([\w-]+):", db, re.M))
    variables = set(re.findall(r"^(\w+) [:?]?= ", db, re.M))
    for cmd in MAKE:
        for word in cmd.words[1:]:
            if "=" in word:
                assert word.split("=")[0] in variables, f"{cmd.where}: `{cmd.text}`: no variable {word}"
            else:
                assert word in targets, f"{cmd.where}: `{cmd.text}`: no target {word}"


def _leaves(cmd: click.Command, path: str) -> list[str]:
    if not isinstance(cmd, click.Group):
        return [path]
    ctx = click.Context(cmd)
    return [
        leaf
        for name in cmd.list_commands(ctx)
        for leaf in _leaves(cmd.get_command(ctx, name), f"{path} {name}")
    ]  # type: ignore[arg-type]


def test_every_cli_command_is_documented() -> None:
    shown = {resolve(concrete(c.words))[2] for c in MASRA}
    missing = [leaf for leaf in _leaves(main, "masra") if leaf not in shown]
    assert not missing, f"CLI commands no document prints in a shell block: {missing}"


def test_make_help_and_ci_agree_with_the_readme() -> None:
    help_line = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True).stdout
    targets = {w for w in re.findall(r"[\w-]+", help_line.split("[")[0]) if w != "make"}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert targets - {"help"} <= set(re.findall(r"make ([\w-]+)", readme)), "README lacks make help targets"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci and "make test" in readme.split("\n## ")[0], (
        "CI must run the README's test command"
    )


def test_the_checks_fail_on_broken_commands() -> None:
    """The checks above can fail: a misspelt command, option and choice are each caught."""
    with pytest.raises(LookupError):
        resolve(["masra", "trian"])
    train, args, _ = resolve(["masra", "train", "--datset", "fixture"])
    assert option_problems(train, args) == ["no option --datset"]
    gen, args, _ = resolve(concrete(["masra", "priors", "generate", "--backend", "vlm|transformers"]))
    assert option_problems(gen, args) and "is not one of" in option_problems(gen, args)[0]
    assert concrete(["masra", "x", "[--seed", "0]", "--a", "b|c"]) == ["masra", "x", "--a", "b"]
