"""The ``journal`` command line: one click group, commands in sibling modules."""

from __future__ import annotations

from journal.cli.main import main

__all__ = ["main"]
