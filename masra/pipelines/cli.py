"""The ``masra`` command line. Each command group lives in its own ``cli_*`` module.

Parsing of user input happens in these modules and nowhere else; they build typed configs and call
library code.
"""

from __future__ import annotations

import logging

import click

from masra.pipelines import (
    cli_app,
    cli_data,
    cli_eval,
    cli_features,
    cli_fixture,
    cli_priors,
    cli_train,
    cli_viz,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """masra: MLLM-assisted video temporal grounding (moment retrieval + highlight detection)."""
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


for _module in (cli_data, cli_features, cli_fixture, cli_priors, cli_train, cli_eval, cli_viz, cli_app):
    for _cmd in _module.COMMANDS:
        main.add_command(_cmd)

if __name__ == "__main__":
    main()
