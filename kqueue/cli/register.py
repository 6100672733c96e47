"""Attach every command group to the root typer app."""

from __future__ import annotations

import typer


def add_all(app: typer.Typer) -> None:
    return None
