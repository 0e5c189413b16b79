"""One lint finding, shared by the parser lint (`lint.py`) and the Q/DQ placement rules (`lint_qdq.py`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LintIssue:
    severity: str  # error | warning
    node: str  # node name (or "graph input X" / "graph output X" / "model")
    op_type: str
    message: str

    def __str__(self) -> str:
        where = f"{self.node} ({self.op_type})" if self.op_type else self.node
        return f"{self.severity}: {where}: {self.message}"
