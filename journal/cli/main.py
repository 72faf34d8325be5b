"""Assemble the command line: import every command module onto the root group."""

from __future__ import annotations

from journal.cli import admin as _admin  # noqa: F401
from journal.cli import events as _events  # noqa: F401
from journal.cli import locks as _locks  # noqa: F401
from journal.cli.app import cli

main = cli
