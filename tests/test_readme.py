"""The README's examples run as written, so they cannot drift from the code."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _blocks("python")
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "audit-demo").is_dir()


def test_readme_quickstart_imports_samples(tmp_path: Path) -> None:
    quickstart = next(b for b in _blocks("sh") if "journal import" in b)
    assert "samples/*/*" in quickstart
    samples = sorted(glob.glob(str(ROOT / "samples" / "*" / "*")))
    assert samples, "no samples shipped"
    cli = [sys.executable, "-m", "journal"]
    audit = tmp_path / "audit"
    imported = subprocess.run(
        [*cli, "import", str(audit), *samples],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert "imported" in imported.stderr
    recent = subprocess.run(
        [*cli, "recent", str(audit)], capture_output=True, text=True, check=False
    )
    assert recent.returncode == 0, recent.stderr
    lines = recent.stdout.splitlines()
    assert lines[0].split()[:2] == ["SEQ", "TIME"]
    assert len(lines) == 21


def test_readme_command_tour_commands_exist() -> None:
    from click.testing import CliRunner

    from journal.cli import main

    tour = next(b for b in _blocks("sh") if "journal debug-run" in b)
    commands = {
        line.split()[1] for line in tour.splitlines() if line.startswith("journal ")
    }
    runner = CliRunner()
    for command in sorted(commands):
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0, f"journal {command} --help: {result.output}"
    assert os.path.exists(ROOT / "docs" / "CLI.md")
