"""Assemble the command line: import every command module onto the root group."""

from __future__ import annotations

from journal.cli.app import cli

main = cli
