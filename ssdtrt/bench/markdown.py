"""Markdown pieces every benchmark report shares: the head (title, command to re-run, machine) and pipe tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ssdtrt.bench.machine import machine_line


def report_head(title: str, command: str | None, machine: dict[str, Any]) -> list[str]:
    """'# title', the command in a code block (when known) and the machine line, each followed by a blank line."""
    lines = [f"# {title}", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    return [*lines, machine_line(machine), ""]


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numbers_right: bool = False) -> list[str]:
    """A pipe table's lines; `numbers_right` right-aligns every column but the first (a label column)."""
    align = ["---" if i == 0 or not numbers_right else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|", *("| " + " | ".join(r) + " |" for r in rows)]
