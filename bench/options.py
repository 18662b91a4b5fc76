"""Command-line options shared by the benchmark entry points (no torch import, so ``bench.run`` stays
light)."""

from __future__ import annotations

import argparse

__all__ = ["add_masra_set_option"]


def add_masra_set_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--masra-set KEY=VALUE`` (repeatable, into ``args.masra_sets``): a ModelConfig override of the
    timed MASRA variant only, the baseline unchanged."""
    parser.add_argument(
        "--masra-set", dest="masra_sets", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )
