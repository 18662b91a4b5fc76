"""Command-line options shared by the benchmark entry points (no torch import, so ``bench.run`` stays
light)."""

from __future__ import annotations

import argparse

__all__ = ["add_candidate_option", "add_masra_set_option"]


def add_masra_set_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--masra-set KEY=VALUE`` (repeatable, into ``args.masra_sets``): a ModelConfig override of the
    timed MASRA variant only, the baseline unchanged."""
    parser.add_argument(
        "--masra-set", dest="masra_sets", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def add_candidate_option(parser: argparse.ArgumentParser) -> None:
    """``--candidate KEY=VALUE ...`` (into ``args.candidate``, a list; repeat the flag or list several
    after it): the accuracy guard of a change, as the label-efficiency and the converged study run it."""
    parser.add_argument(
        "--candidate",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Accuracy guard of a change: also train masra+true with these overrides and report it "
        "against masra+true paired by seed (no loss beyond one standard error).",
    )
