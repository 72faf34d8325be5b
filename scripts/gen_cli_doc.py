"""Write docs/CLI.md from the commands' own help texts.

Run after changing a command: ``python scripts/gen_cli_doc.py``.
"""

from __future__ import annotations

from pathlib import Path

import click

from journal.cli import main

HEADER = """# Command line reference

Generated from `journal <command> --help` by `scripts/gen_cli_doc.py`.

Global options (before the command): `--version`, `-v/--verbose` (repeat for debug),
`--log-level debug|info|warning|error`, `-h/--help`.

Exit codes used by every command: 0 success, 1 failure (a finding of `verify`, damaged data,
an unreadable file, a missing journal), 2 usage error, 75 the write lock was not free within
`--lock-timeout`, 124 `debug-run` timed out (otherwise `debug-run` returns the command's own
code). Errors are one line on stderr: what failed, on which value, and what to do.

JSON output (`--json`) is JSON Lines: one object per line. Events carry `seq`, `id`, `time`
(RFC 3339, UTC), `actor`, `action`, `target`, `outcome`, `source`, `metadata`.
"""


def main_doc() -> str:
    parts = [HEADER]
    ctx = click.Context(main, info_name="journal")
    assert isinstance(main, click.Group)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        sub = click.Context(command, info_name=name, parent=ctx)
        parts.append(f"## journal {name}\n\n```text\n{command.get_help(sub)}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "docs" / "CLI.md"
    out.write_text(main_doc(), encoding="utf-8")
    print(f"wrote {out}")
