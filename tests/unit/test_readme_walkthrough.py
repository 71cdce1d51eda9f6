"""The README's "Label your own data" commands are the walkthrough's (which tests/e2e/test_label_your_own_data.py
runs as it is), and every command of the walkthrough is one the `labelmesh` CLI accepts, options and all."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.cli_helpers import command_path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "label-your-own-data"


def _command(line: str) -> tuple[str, ...] | None:
    """A `labelmesh ...` line's words without comments, `VAR=$(...)` around it or the walkthrough's $OUT prefix."""
    words = shlex.split(line, comments=True)
    if words and (m := re.fullmatch(r"\w+=\$\((labelmesh)", words[0])):
        words = [m.group(1), *words[1:-1], words[-1].removesuffix(")")]
    if not words or words[0] != "labelmesh":
        return None
    return tuple(w.removeprefix("${OUT:-.}/") for w in words)


def _commands(text: str) -> list[tuple[str, ...]]:
    return [c for c in map(_command, text.splitlines()) if c is not None]


def _readme_commands() -> list[tuple[str, ...]]:
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Label your own data", 1)[1]
    return _commands(re.search(r"```bash\n(.*?)```", section.split("\n## ", 1)[0], re.S).group(1))


WALKTHROUGH = _commands((EXAMPLE / "walkthrough.sh").read_text(encoding="utf-8"))


def test_the_readme_shows_the_walkthrough_s_own_commands() -> None:
    readme = _readme_commands()
    assert len(readme) >= 6
    assert [c for c in readme if c not in WALKTHROUGH] == []
    assert {c[1] for c in readme} == {"project", "annotator", "ingest", "annotate", "status", "export"}


@pytest.mark.parametrize("words", WALKTHROUGH, ids=lambda w: " ".join(w[1:3]))
def test_a_walkthrough_command_parses(words: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLE)  # its files are named relative to the walkthrough's folder
    monkeypatch.setenv("LABELMESH_ADMIN_TOKEN", "admin")
    assert command_path(list(words[1:])).startswith("labelmesh " + words[1])
