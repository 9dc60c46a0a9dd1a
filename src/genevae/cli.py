"""Project commands: ``kedro run`` that ends a bad input with its message, not a traceback.

Kedro loads this module's ``cli`` group and lets its commands override the built-in ones.
``run`` takes every option of Kedro's own ``run`` plus ``--verbose``. When the run fails
because of bad input (a :class:`~genevae.errors.GenevaeInputError`, raised by the
configuration checks or inside a node), it prints that message and exits with status 2;
``--verbose`` (or ``GENEVAE_VERBOSE=1``) shows the full traceback instead.
"""

from __future__ import annotations

import os
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from genevae.errors import GenevaeInputError

EXIT_BAD_INPUT = 2
VERBOSE_ENV = "GENEVAE_VERBOSE"


@click.group(name="genevae")
def cli() -> None:
    """genevae's project commands."""


def input_error(error: BaseException | None) -> GenevaeInputError | None:
    """The bad-input error behind ``error`` (Kedro wraps errors raised while loading data)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, GenevaeInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _verbose(flag: bool) -> bool:
    return flag or os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes")


def _run(verbose: bool, **options: Any) -> Any:
    try:
        return kedro_run.callback(**options)
    except Exception as error:
        bad_input = input_error(error)
        if bad_input is None or _verbose(verbose):
            raise
        click.secho(f"Error: {bad_input}", fg="red", err=True)
        click.echo("(run again with --verbose for the traceback)", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None


_VERBOSE_OPTION = click.Option(
    ["--verbose", "-v"],
    is_flag=True,
    help=f"On bad input, show the full traceback (also: {VERBOSE_ENV}=1).",
)
cli.add_command(
    click.Command(
        "run",
        callback=_run,
        params=[*kedro_run.params, _VERBOSE_OPTION],
        help=kedro_run.help,
        short_help=kedro_run.short_help,
    )
)
