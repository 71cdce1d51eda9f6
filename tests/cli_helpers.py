"""Shared by the tests of the README's commands: parse a `labelmesh` command line as the CLI would, running nothing."""

from __future__ import annotations

from typing import Any

import typer

from labelmesh.cli import app


def _parse(command: Any, args: list[str], name: str, parent: Any = None) -> str:
    ctx = command.make_context(name, args, parent=parent)
    if hasattr(command, "resolve_command"):  # a group (typer carries its own click: duck-typed)
        sub_name, sub, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        return _parse(sub, rest, sub_name, ctx)
    return ctx.command_path


def command_path(args: list[str]) -> str:
    """The command `labelmesh ARGS` runs (required options, types and choices checked), e.g. 'labelmesh ingest'."""
    return _parse(typer.main.get_command(app), args, "labelmesh")
