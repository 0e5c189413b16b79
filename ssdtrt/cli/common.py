"""Shared option aliases and console helpers for the Typer commands (thin: heavy imports stay in commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
