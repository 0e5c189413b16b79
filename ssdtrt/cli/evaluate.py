"""`ssdtrt eval`: COCO mAP@[.5:.95], mAP@.5 and VOC07 AP per class of a model on a dataset split.

Every backend (torch checkpoints included) goes through the one route, `Detector(model).detect`, and is scored by
the same `ssdtrt.evaluate.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ssdtrt.cli.common import DataOption, DeviceOption, NoVerifyOption


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


@dataclass
class PredictorInfo:
    """What `make_predict_fn` loaded: the per-batch function and the model's class names / description."""

    predict_fn: Any
    class_names: tuple[str, ...]
    description: str
    detector: Any = None  # the Detector behind predict_fn (closed by the caller)


def make_predict_fn(
    model_path: Path, *, device: str = "cpu", batch_size: int = 16, verify_hash: bool = True, backend: str | None = None
) -> PredictorInfo:
    """`Detector(model).detect` (list of RGB images -> list of Detections in pixels) for any model: checkpoint
    (torch; postprocess in torch, as the training loop scores it), ONNX, OpenVINO IR or TensorRT plan."""
    from ssdtrt.inference.detector import Detector
    from ssdtrt.runtime import backend_for

    chosen = backend_for(model_path, backend)[1]
    options: dict[str, Any] = {"verify_hash": verify_hash}
    if chosen == "torch":
        if device == "cpu":
            import torch

            from ssdtrt.train.loop import auto_threads

            torch.set_num_threads(auto_threads())  # no oversubscription on a shared machine
        options.update(device=device, postprocess_placement="host-torch",
                       postprocess_device=device if device.startswith("cuda") else "cpu")
    det = Detector(model_path, backend=chosen, batch_size=batch_size, **options)
    det.activate()
    m = det.manifest
    if chosen == "torch":
        desc = f"{model_path} (torch, preset {m.model_spec.name}, {device})"
    else:
        desc = f"{model_path} ({chosen}, {m.export_mode}, {m.precision}, preset {m.model_spec.name})"
    return PredictorInfo(det.detect, tuple(m.class_names), desc, det)


def eval_cmd(
    model: Annotated[
        Path, typer.Argument(help="Checkpoint (.pt), ONNX (.onnx), OpenVINO (.xml) or TensorRT plan (.plan) to evaluate.")
    ],
    data: DataOption = "synthetic",
    split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "val",
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Write {map, map50, per_class} here (atomic).")  # noqa: UP007
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Evaluate the first N images only.")] = None,  # noqa: UP007
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per inference batch.")] = 16,
    device: DeviceOption = "cpu",
    no_verify: NoVerifyOption = False,
) -> None:
    """Score a model: COCO mAP@[.5:.95], mAP@.5 (pycocotools) and VOC07 11-point AP per class."""
    from ssdtrt.cli.common import console
    from ssdtrt.data import open_dataset
    from ssdtrt.core.errors import ClassCountMismatchError

    dataset = open_dataset(data, split)
    info = make_predict_fn(model, device=device, batch_size=batch_size, verify_hash=not no_verify)
    try:
        names = tuple(dataset.class_names)
        if len(info.class_names) != len(names):
            raise ClassCountMismatchError(
                f"{model}: the model has {len(info.class_names)} classes, dataset {data!r} has {len(names)}"
            )
        if info.class_names != names:
            console(stderr=True).print(
                f"[yellow]note:[/yellow] model class names {list(info.class_names)} differ from the dataset's; "
                "scoring by label index with the dataset's names")
        result = _run(info, dataset, limit, batch_size)
    finally:
        info.detector.close()
    _print_table(result, info.description, f"{data} [{split}]")
    if json_path is not None:
        from ssdtrt.io.files import atomic_write_json

        atomic_write_json(json_path, {"map": result.map, "map50": result.map50, "per_class": result.per_class})
        console().print(f"wrote {json_path}")


def _run(info: PredictorInfo, dataset: Any, limit: int | None, batch_size: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ssdtrt.cli.common import console
    from ssdtrt.evaluate import evaluate

    total = len(dataset) if limit is None else min(limit, len(dataset))
    with Progress(
        TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console(stderr=True)
    ) as progress:
        task = progress.add_task("eval", total=total)
        return evaluate(
            info.predict_fn,
            dataset,
            batch_size=batch_size,
            limit=limit,
            progress=lambda n: progress.advance(task, n),
        )


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _print_table(result: Any, model_desc: str, data_desc: str) -> None:
    from rich.table import Table

    from ssdtrt.cli.common import console

    table = Table(title=f"{model_desc} on {data_desc}: {result.num_images} images")
    for col in ("class", "GT boxes", "AP VOC07", "AP@.5", "AP@[.5:.95]"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, pc in result.per_class.items():
        table.add_row(name, str(pc["num_gt"]), _fmt(pc["ap50_voc07"]), _fmt(pc["ap50"]), _fmt(pc["ap"]))
    table.add_section()
    total_gt = sum(int(pc["num_gt"] or 0) for pc in result.per_class.values())
    table.add_row("[bold]mean", str(total_gt), _fmt(result.map50_voc07), _fmt(result.map50), _fmt(result.map))
    console().print(table)
    console().print(f"COCO mAP@[.5:.95] {result.map:.4f}   mAP@.5 {result.map50:.4f}   VOC07 mAP {result.map50_voc07:.4f}")
