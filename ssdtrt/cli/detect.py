"""`ssdtrt detect MODEL INPUTS... --out DIR`: run a model on images, folders, globs and videos.

Writes annotated copies (boxes, class names, scores) and `DIR/detections.json` (COCO results). A bad input gets one
line on stderr naming it and why; the others are still processed; the exit code is 1 if any input failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ssdtrt.cli.common import NoVerifyOption

if TYPE_CHECKING:
    import numpy as np

    from ssdtrt.imageio import InputItem
    from ssdtrt.pipeline import Detector

RESULTS_FILE = "detections.json"


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_cmd)


def detect_cmd(
    model: Annotated[
        Path, typer.Argument(help="Checkpoint (.pt), ONNX (.onnx), OpenVINO (.xml) or TensorRT plan (.plan).")
    ],
    inputs: Annotated[
        list[str], typer.Argument(help="Images, folders, glob patterns (quoted) or video files (.mp4 .avi .mov .mkv).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder for annotated images and detections.json.")],
    backend: Annotated[
        Optional[str],  # noqa: UP007 - typer needs Optional on older Pythons
        typer.Option("--backend", help="torch, onnxruntime, openvino or tensorrt (default: from MODEL's type)."),
    ] = None,
    score_threshold: Annotated[
        float, typer.Option("--score-threshold", min=0.0, max=1.0, help="Keep detections scoring above this.")
    ] = 0.3,
    iou_threshold: Annotated[
        Optional[float],  # noqa: UP007
        typer.Option("--iou-threshold", min=0.0, max=1.0, help="NMS IoU threshold (default: the model's)."),
    ] = None,
    max_detections: Annotated[
        Optional[int],  # noqa: UP007
        typer.Option("--max-detections", min=1, help="Detections per image at most (default: the model's)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per inference call.")] = 8,
    no_images: Annotated[
        bool, typer.Option("--no-images", help="Write only detections.json, no annotated images.")
    ] = False,
    device: Annotated[
        Optional[str],  # noqa: UP007
        typer.Option("--device", help="cpu or cuda[:i]: where the runner runs; cuda also runs the postprocess on the GPU (needs torch). "
            "Default: the backend's own choice, postprocess on the CPU."),
    ] = None,
    no_verify: NoVerifyOption = False,
) -> None:
    """Detect objects in images and videos; write annotated images and COCO-format detections.json."""
    import os

    from ssdtrt.cli.common import console

    # FFmpeg logs "moov atom not found" and the like straight to stderr; our one line per bad input says it all.
    # Read when OpenCV opens its first video, so set here (a user's own setting wins).
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    from ssdtrt.imageio import expand_inputs

    err_con = console(stderr=True)
    _check_model_path(model)
    sources = expand_inputs(inputs)
    options = {**_runner_options(model, backend, device), "verify_hash": not no_verify}
    detector = _open_detector(model, backend, score_threshold, iou_threshold, max_detections, batch_size, device, options)
    run = _Run(out=out, write_images=not no_images)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _progress(err_con, sources) as progress:
            task = progress.add_task("detecting", total=_estimate_total(sources))
            run.report = lambda msg: progress.console.print(msg, markup=False, highlight=False, soft_wrap=True)
            run.advance = lambda n: progress.advance(task, n)
            _process(detector, sources, run)
    finally:
        detector.close()
    from ssdtrt.cocojson import category_ids_from_manifest, write_coco_results

    cats = category_ids_from_manifest(detector.manifest)
    if cats is not None:
        for rec in run.records:
            rec["category_id"] = int(cats[rec["category_id"] - 1])
    results_path = write_coco_results(out / RESULTS_FILE, run.records)
    what = "" if no_images else f", annotated images in {out}"
    console().print(
        f"{run.images} image(s), {len(run.records)} detection(s) (score > {detector.settings.score_threshold:g}) "
        f"→ {results_path}{what}" + (f"; {run.failures} input(s) failed" if run.failures else ""),
        markup=False, highlight=False, soft_wrap=True,
    )
    if run.failures:
        raise typer.Exit(1)


@dataclass
class _Run:
    """Mutable state of one detect run (kept out of module globals)."""

    out: Path
    write_images: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    used_names: set[str] = field(default_factory=set)
    images: int = 0
    failures: int = 0
    report: Any = print
    advance: Any = lambda n: None  # noqa: E731


def _check_model_path(model: Path) -> None:
    from ssdtrt.errors import CheckpointError, ManifestError

    if not model.exists():
        cls = CheckpointError if model.suffix.lower() in (".pt", ".pth") else ManifestError
        raise cls(f"{model}: no such model file")


def _runner_options(model: Path, backend: str | None, device: str | None) -> dict[str, Any]:
    """`--device` (cpu | cuda[:i]) in each backend's own terms; nothing when not given (the backend's default)."""
    if device is None:
        return {}
    from ssdtrt.errors import BackendUnavailableError
    from ssdtrt.runtime import backend_for

    device = device.lower()
    if device != "cpu" and not device.startswith("cuda"):
        raise typer.BadParameter(f"--device must be cpu or cuda[:index], not {device!r}")
    _, chosen = backend_for(model, backend)
    index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else None
    if chosen == "torch":
        return {"device": device}
    if chosen == "onnxruntime":
        cpu = ["CPUExecutionProvider"]
        return {"providers": cpu if index is None else [("CUDAExecutionProvider", {"device_id": index}), *cpu]}
    if chosen == "openvino":
        if index is not None:
            raise BackendUnavailableError("OpenVINO runs on the CPU here; use --device cpu (or TensorRT for CUDA)")
        return {"device": "CPU"}
    if index is None:
        raise BackendUnavailableError("TensorRT runs on a CUDA GPU; --device cpu is not possible for a .plan")
    return {"device_index": index}


def _open_detector(
    model: Path,
    backend: str | None,
    score_threshold: float,
    iou_threshold: float | None,
    max_detections: int | None,
    batch_size: int,
    device: str | None,
    options: dict[str, Any],
) -> Detector:
    import warnings

    from ssdtrt.pipeline import Detector

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = Detector(
            model, backend=backend, score_threshold=score_threshold, iou_threshold=iou_threshold,
            max_detections=max_detections, batch_size=batch_size,
            postprocess_device=device if device and device.startswith("cuda") else "cpu", **options,
        )
        detector.runner.activate()  # open (and verify) the model now: its warnings and errors come before the progress
    from ssdtrt.cli.common import console

    for w in caught:  # e.g. thresholds an nms-mode model cannot apply
        console(stderr=True).print(f"warning: {w.message}", markup=False, highlight=False, soft_wrap=True)
    return detector


def _progress(con: Any, sources: list[Any]) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=con, disable=not con.is_terminal, transient=False,
    )


def _estimate_total(sources: list[Any]) -> int | None:
    from ssdtrt.imageio import video_frame_count

    total = 0
    for src in sources:
        total += max(video_frame_count(src.path), 1) if src.kind == "video" else 1  # a bad video: 1 error
    return total or None


def _process(detector: Detector, sources: list[Any], run: _Run) -> None:
    """Stream inputs, batch the good ones, report the bad ones (one line each)."""
    from ssdtrt.imageio import iter_inputs, prefetch

    pending: list[InputItem] = []
    for item in prefetch(iter_inputs(sources), depth=2 * detector.batch_size):
        if not item.ok:
            run.failures += 1
            run.report(f"error: {item.error}")
            run.advance(1)
            continue
        pending.append(item)
        if len(pending) >= detector.batch_size:
            _flush(detector, pending, run)
            pending = []
    if pending:
        _flush(detector, pending, run)


def _flush(detector: Detector, items: list[InputItem], run: _Run) -> None:
    from ssdtrt.cocojson import coco_records
    from ssdtrt.errors import SSDTRTError

    images: list[np.ndarray] = [it.image_rgb for it in items]  # type: ignore[misc]
    for item, dets in zip(items, detector.detect(images)):
        run.images += 1
        if run.write_images:
            try:
                _write_annotated(item, dets, run)
            except (OSError, SSDTRTError) as err:  # one bad write must not stop the run
                run.failures += 1
                run.report(f"error: {item.name}: cannot write the annotated image ({err})")
        run.records.extend(coco_records(dets, image_id=run.images, file_name=item.name))
        run.advance(1)


def _write_annotated(item: InputItem, dets: Any, run: _Run) -> None:
    from ssdtrt.visualize import annotated_suffix, draw_detections, write_image

    assert item.path is not None and item.image_rgb is not None
    stem = item.path.stem if item.frame is None else f"{item.path.stem}_{item.frame:06d}"
    suffix = annotated_suffix(item.path.suffix if item.frame is None else ".jpg")
    name, n = f"{stem}{suffix}", 1
    while name.lower() in run.used_names:  # same stem from two folders: keep both
        n += 1
        name = f"{stem}_{n}{suffix}"
    run.used_names.add(name.lower())
    write_image(run.out / name, draw_detections(item.image_rgb, dets))
