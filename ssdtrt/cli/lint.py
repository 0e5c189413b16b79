"""`ssdtrt lint`: would TensorRT's ONNX parser accept this model? (No TensorRT needed.)"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class TrtMajor(str, Enum):
    """TensorRT majors with an operator table (ssdtrt/export/trt_supported_ops.json)."""

    v10 = "10"
    v11 = "11"


def register(app: typer.Typer) -> None:
    app.command("lint")(lint_cmd)


def lint_cmd(
    model: Annotated[Path, typer.Argument(help="An ONNX model.")],
    json_out: Annotated[
        Optional[Path], typer.Option("--json", help="Also write the report as JSON to this path.")  # noqa: UP007
    ] = None,
    trt: Annotated[
        TrtMajor, typer.Option("--trt", help="TensorRT major whose ONNX parser to check against (default 10, the "
                                             "strictest: 11.x only adds operators such as Swish).")
    ] = TrtMajor.v10,
) -> int:
    """Check ops, opset, Q/DQ form, NMS box budget, dynamic dims and output shapes against TensorRT's ONNX parser;
    exit 1 on errors."""
    from rich.table import Table

    from ssdtrt.cli.common import console
    from ssdtrt.export.lint import lint_onnx
    from ssdtrt.io.files import atomic_write_json

    report = lint_onnx(model, trt_major=int(trt.value))
    con = console()
    ops = ", ".join(f"{k}×{v}" for k, v in report.op_counts.items())
    con.print(f"{model}: opset {report.opset}, {report.num_nodes} nodes ({ops})")
    con.print(f"TensorRT {report.trt_major}.x operator table: {report.source}")
    if report.issues:
        table = Table("severity", "node", "op", "problem")
        for i in report.issues:
            table.add_row(i.severity, i.node, i.op_type, i.message)
        con.print(table)
    con.print(f"[{'green' if report.ok else 'red'}]{'OK' if report.ok else 'FAIL'}[/]: "
              f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    if json_out is not None:
        atomic_write_json(json_out, report.to_dict())
    return 0 if report.ok else 1
