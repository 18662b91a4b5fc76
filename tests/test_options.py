"""masra/pipelines/options.py: one flag, ``--priors-run``, names a prior run on every command; the old
flags (``--priors`` of training, ``--run`` of ``masra priors``) still work, hidden, with a warning."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from masra.pipelines.cli import main
from masra.pipelines.options import prior_run_option


@click.command()
@prior_run_option(old="--run", default="imported", help="A prior run.")
def _echo(priors_run: str) -> None:
    click.echo(f"run={priors_run}")


@pytest.mark.parametrize(
    ("argv", "run", "warned"),
    [([], "imported", False), (["--priors-run", "ext"], "ext", False), (["--run", "old"], "old", True)],
)
def test_the_new_flag_the_old_one_and_the_default(argv: list[str], run: str, warned: bool) -> None:
    res = CliRunner().invoke(_echo, argv)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"run={run}"
    assert ("--run is deprecated; use --priors-run" in res.stderr) is warned


def test_both_flags_are_a_usage_error_and_the_old_one_is_hidden() -> None:
    res = CliRunner().invoke(_echo, ["--priors-run", "a", "--run", "b"])
    assert res.exit_code == 2 and "give --priors-run only (--run is its old name)" in res.output
    shown = CliRunner().invoke(_echo, ["--help"]).output
    assert "--priors-run RUN" in shown and "[default: imported]" in shown and "--run" not in shown


@pytest.mark.parametrize(
    ("command", "old"),
    [
        (("train",), "--priors"),
        (("ablate",), "--priors"),
        (("priors", "embed"), "--run"),
        (("priors", "report"), "--run"),
        (("priors", "import"), "--run"),
        (("viz", "timelines"), "--priors"),
    ],
)
def test_every_command_naming_a_prior_run_has_priors_run(command: tuple[str, ...], old: str) -> None:
    cmd: click.Command = main
    for name in command:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    flags = {o: p for p in cmd.params for o in p.opts}
    assert flags["--priors-run"].name == "priors_run" and not getattr(flags["--priors-run"], "hidden", False)
    assert getattr(flags[old], "hidden", False), f"{old} of masra {' '.join(command)} is not hidden"
