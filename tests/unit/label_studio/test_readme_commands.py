"""The README's "Label in Label Studio" commands are ones the `labelmesh` CLI accepts, options and all."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.cli_helpers import command_path

README = Path(__file__).resolve().parents[3] / "README.md"


def _commands() -> list[list[str]]:
    section = README.read_text(encoding="utf-8").split("## Label in Label Studio", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("labelmesh ")]
    return [words[1:-1] if words[-1] == "&" else words[1:] for words in lines]


def test_the_readme_shows_every_label_studio_command() -> None:
    assert {c[1] for c in _commands()} == {"init", "map-user", "backend", "connect", "sync"}


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a[:2]))
def test_a_readme_command_parses(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_TOKEN", "pat")
    monkeypatch.setenv("LABELMESH_ADMIN_TOKEN", "admin")
    assert command_path(args) == "labelmesh " + " ".join(args[:2])
