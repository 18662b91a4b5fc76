"""What several commands share: the card override option, the card a command names, one-line error
messages, and the prior-run option.

A prior run (stage 1's output, a folder under the card's ``prior_dir``) has one name everywhere:
``priors_run`` in training configs and :class:`~masra.grounding.config.TrainConfig`, ``--priors-run``
on the command line (:func:`prior_run_option`: ``masra train``, ``masra ablate``, ``masra priors
embed / report / import``). The flags these commands used before (``--priors`` for training,
``--run`` for ``masra priors``) still work: hidden from ``--help``, they print a deprecation warning
and set the same value."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from masra.datasets.card import DatasetCard, load_card, parse_overrides

__all__ = ["CARD_SET", "PRIOR_RUN_FLAG", "cli_card", "error_text", "prior_run_option"]

CARD_SET = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a dataset card key (dotted)."
)


def error_text(e: Exception) -> str:
    """The message of ``e`` for the user (a KeyError's without the quotes ``str`` adds)."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def cli_card(dataset: str, overrides: tuple[str, ...]) -> DatasetCard:
    """The card ``--dataset`` names, with the ``--set`` overrides; a bad one is a one-line error."""
    try:
        return load_card(dataset, parse_overrides(list(overrides)))
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None


PRIOR_RUN_FLAG = "--priors-run"
_OLD_PRIOR_RUN_DEST = "priors_run_old_flag"

F = TypeVar("F", bound=Callable[..., Any])


def prior_run_option(
    *,
    old: str,
    help: str,
    value_type: click.ParamType | Any = None,
    default: Any = None,
    metavar: str = "RUN",
) -> Callable[[F], F]:
    """``--priors-run`` (keyword ``priors_run``) plus ``old``, its former name, hidden and deprecated.

    Apply it below ``@click.command`` like any ``click.option``. Giving both flags is a usage error;
    ``old`` alone warns on stderr and sets ``priors_run``. ``default`` is applied when neither is
    given (and shown in ``--help``).

    Args:
        old: the flag the command used before, e.g. ``"--run"``.
        help: the help text of ``--priors-run``.
        value_type: the click type of the value (a name: ``str``; a folder: a ``click.Path``).
        default: the value when neither flag is given.
        metavar: how ``--help`` names the value.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            old_value = kwargs.pop(_OLD_PRIOR_RUN_DEST)
            if old_value is not None:
                if kwargs["priors_run"] is not None:
                    raise click.UsageError(f"give {PRIOR_RUN_FLAG} only ({old} is its old name)")
                click.echo(f"Warning: {old} is deprecated; use {PRIOR_RUN_FLAG}", err=True)
                kwargs["priors_run"] = old_value
            if kwargs["priors_run"] is None:
                kwargs["priors_run"] = default
            return fn(*args, **kwargs)

        text = help if default is None else f"{help}  [default: {default}]"  # click's own would say (default)
        opts: dict[str, Any] = {"type": value_type, "default": None, "metavar": metavar}
        command = click.option(PRIOR_RUN_FLAG, "priors_run", help=text, **opts)(command)
        command = click.option(old, _OLD_PRIOR_RUN_DEST, hidden=True, **opts)(command)
        return command  # type: ignore[return-value]

    return decorate
