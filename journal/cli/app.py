"""The root click group, shared options and output helpers for every command."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

import click
import msgspec

from journal import __version__

#: Exit codes shared by every command.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75
EXIT_TIMEOUT = 124

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _StderrHandler(logging.Handler):
    """Write log records to whatever ``sys.stderr`` is at the time of the record."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


_handler = _StderrHandler()
_handler.setFormatter(logging.Formatter("journal: %(levelname)s: %(message)s"))


_level_chosen = False


def log_level_chosen() -> bool:
    """Return whether -v or --log-level set the level for this command."""
    return _level_chosen


def _configure_logging(verbose: int, log_level: str | None) -> None:
    global _level_chosen  # noqa: PLW0603 (set once per command line)
    _level_chosen = log_level is not None or verbose > 0
    if log_level is not None:
        level = getattr(logging, log_level.upper())
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    logger = logging.getLogger("journal")
    # One handler however often the command line runs in this process.
    if _handler not in logger.handlers:
        logger.addHandler(_handler)
    logger.setLevel(level)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="journal")
@click.option(
    "-v", "--verbose", count=True, help="Log more to stderr (-v info, -vv debug)."
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None,
    help="Set the level of the journal logger on stderr (overrides -v).",
)
def cli(verbose: int, log_level: str | None) -> None:
    """Keep an append-only, tamper-evident audit journal on local disk.

    \b
    Example:
      journal import ./audit samples/k8s/*.json
      journal recent ./audit -n 10
    """
    _configure_logging(verbose, log_level)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print a one-line error on stderr and exit with *code*."""
    click.echo(f"journal: error: {message}", err=True)
    sys.exit(code)


def color_enabled() -> bool:
    """Return whether stdout may carry ANSI colour."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


_json_encoder = msgspec.json.Encoder()


def echo_json(obj: Any) -> None:
    """Write *obj* as one JSON line on stdout."""
    click.echo(_json_encoder.encode(obj).decode())


def echo_table(
    headers: list[str],
    rows: list[list[str]],
    right: set[int] | None = None,
    gap: int = 2,
) -> None:
    """Print *rows* as an aligned table with a header row, *gap* spaces apart."""
    right = right or set()
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def fmt(cells: list[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            parts.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return (" " * gap).join(parts).rstrip()

    click.echo(fmt(headers))
    for row in rows:
        click.echo(fmt(row))
