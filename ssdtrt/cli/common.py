"""Shared option aliases and console helpers for the Typer commands (thin: heavy imports stay in commands)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

def choice_enum(name: str, values: Sequence[str]) -> Any:
    """A str Enum for a Typer option whose choices are a library constant (so the CLI cannot drift from it);
    members are named like the values with '-' → '_' (`InputFormat.uint8_nhwc.value == "uint8-nhwc"`)."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)


DataOption = Annotated[
    str,
    typer.Option(
        "--data",
        help="Dataset: 'synthetic' (embedded default), 'voc:PATH' (VOCdevkit/VOC20xx) or "
        "'coco:IMAGES_DIR:ANNOTATIONS_JSON'.",
    ),
]
PresetOption = Annotated[str, typer.Option("--preset", help="Model preset: ssd300-resnet50, ssd300-vgg16, ssd-small.")]
OutDirOption = Annotated[Path, typer.Option("--out", help="Output folder (created if missing).")]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
NoVerifyOption = Annotated[
    bool,
    typer.Option("--no-verify", help="Skip the sha256 check of the model file against its manifest (the size is "
                 "still checked); ~0.2 s saved per 100 MB."),
]


def console(stderr: bool = False):  # noqa: ANN201 - rich.Console, imported lazily
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)
MarkdownOption = Annotated[
    Optional[Path],  # noqa: UP007
    typer.Option("--markdown", help="Write the table, machine and settings as markdown."),
]


def csv_ints(text: str, what: str) -> tuple[int, ...]:
    """'1,8,32' → (1, 8, 32); a usage error naming the option `what` unless every value is a positive integer."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{what}: expected comma-separated integers like 1,8, got {text!r}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{what}: expected positive integers, got {text!r}")
    return values


def size_hw(text: str | None, what: str = "--image-size") -> tuple[int, int] | None:
    """'480x640' → (480, 640) (height, width); None for an empty value."""
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{what}: expected HEIGHTxWIDTH like 480x640, got {text!r}") from None
    return h, w


def invoked_command() -> str | None:
    """The command line as typed ('ssdtrt bench ...', without --debug) for a report to be re-run from; None when the
    command was not started from the console (e.g. `main([...])` in tests), where sys.argv says nothing about it."""
    from ssdtrt.bench.record_paths import portable_text

    if Path(sys.argv[0]).name not in ("ssdtrt", "app.py", "__main__.py"):
        return None
    return portable_text("ssdtrt " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--debug"))  # repo-relative


def print_table(con, table: object, min_width: int = 140) -> None:  # noqa: ANN001 - rich.Console
    """Print a wide rich table; into a pipe or file (no terminal width to respect) at least `min_width` columns."""
    if not con.is_terminal:
        con.width = max(con.width, min_width)
    con.print(table)


def write_report_files(
    con,  # noqa: ANN001 - rich.Console
    report: dict[str, Any],
    *,
    json_out: Path | None,
    markdown_out: Path | None,
    plot_out: Path | None,
    markdown: Callable[[], str],
    plot: Callable[[dict[str, Any], Path], Path],
) -> None:
    """Write the report files asked for (JSON, markdown text from `markdown()`, PNG by `plot`), one line per file."""
    from ssdtrt.bench.record_paths import portable_record, portable_text
    from ssdtrt.io.files import atomic_write_json, atomic_write_text

    # records hold paths relative to the repository, never the recording machine's absolute paths
    if json_out is not None:
        con.print(f"JSON: {atomic_write_json(json_out, portable_record(report))}")
    if markdown_out is not None:
        con.print(f"markdown: {atomic_write_text(markdown_out, portable_text(markdown()))}")
    if plot_out is not None:
        con.print(f"plot: {plot(report, plot_out)}")


@contextmanager
def task_bars(err, *, counts: bool = True) -> Iterator[Callable[[str, float, float], None]]:  # noqa: ANN001
    """Transient rich progress bars on `err`, one per description; yields `update(description, done, total)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), *([MofNCompleteColumn()] if counts else []),
               TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(description: str, done: float, total: float) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], completed=min(done, total))

        yield update
