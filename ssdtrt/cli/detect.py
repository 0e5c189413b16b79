"""`ssdtrt detect MODEL INPUTS... --out DIR`: run a model on images, folders, globs and videos.

Writes annotated copies (boxes, class names, scores; videos as annotated .mp4) and `DIR/detections.json` (COCO
results). A bad input gets one line on stderr naming it and why; the others are still processed; the exit code is 1
if any input failed. By default the inputs go through `Detector.stream` (throughput mode: decoding, preprocess,
several inference requests and postprocess overlapped); `--sequential` runs the stages one after another.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ssdtrt.cli.common import NoVerifyOption

if TYPE_CHECKING:
    import numpy as np

    from ssdtrt.io.images import InputItem
    from ssdtrt.inference.detector import Detector

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
    batch_size: Annotated[
        Optional[int],  # noqa: UP007
        typer.Option("--batch-size", min=1, help="Images per inference call (default: the backend's choice when "
                     "streaming: the model's static batch, else 1 for a model whose one-image request takes 10 ms or "
                     "more and up to 8 for a smaller one; 8 with --sequential)."),
    ] = None,
    requests: Annotated[
        Optional[int],  # noqa: UP007
        typer.Option("--requests", min=1, help="Inference requests in flight at once (default: the backend's "
                     "optimal number, e.g. OpenVINO's OPTIMAL_NUMBER_OF_INFER_REQUESTS)."),
    ] = None,
    sequential: Annotated[
        bool, typer.Option("--sequential", help="Run read → preprocess → infer → postprocess one after another "
                           "(one request in flight, latency-mode runner): the pre-throughput-mode path, for debugging."),
    ] = False,
    frames: Annotated[
        bool, typer.Option("--frames", help="Also write every annotated video frame as <video>_<frame>.jpg "
                           "(videos are always written as annotated .mp4 files unless --no-images)."),
    ] = False,
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
    from ssdtrt.io.images import expand_inputs

    err_con = console(stderr=True)
    _check_model_path(model)
    sources = expand_inputs(inputs)
    options = {**_runner_options(model, backend, device), "verify_hash": not no_verify}
    if not sequential:
        options.update(mode="throughput", requests=requests)  # ssdtrt.runtime.open_runner's throughput mode
    detector = _open_detector(
        model, backend, score_threshold, iou_threshold, max_detections, batch_size or 8, device, options
    )
    from ssdtrt.io.outputs import DetectOutputs

    sink = DetectOutputs(out=out, write_images=not no_images, write_frames=frames)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with _progress(err_con) as progress:
            task = progress.add_task("detecting", total=_estimate_total(sources))
            sink.report = lambda msg: progress.console.print(msg, markup=False, highlight=False, soft_wrap=True)

            def advance(n: int) -> None:
                progress.advance(task, n)

            try:
                if sequential:
                    _run_sequential(detector, sources, sink, advance)
                else:
                    _run_stream(detector, sources, sink, batch_size, advance)
            finally:
                sink.close()
    finally:
        detector.close()
    seconds = time.perf_counter() - start
    from ssdtrt.io.cocojson import category_ids_from_manifest, write_coco_results

    cats = category_ids_from_manifest(detector.manifest)
    if cats is not None:
        for rec in sink.records:
            rec["category_id"] = int(cats[rec["category_id"] - 1])
    results_path = write_coco_results(out / RESULTS_FILE, sink.records)
    what = "" if no_images else f", annotated images{' and videos' if sink.videos else ''} in {out}"
    rate = f" in {seconds:.1f} s ({sink.images / seconds:.1f} images/s)" if seconds > 0 else ""
    console().print(
        f"{sink.images} image(s){rate}, {len(sink.records)} detection(s) "
        f"(score > {detector.settings.score_threshold:g}) → {results_path}{what}"
        + (f"; {sink.failures} input(s) failed" if sink.failures else ""),
        markup=False, highlight=False, soft_wrap=True,
    )
    if sink.failures:
        raise typer.Exit(1)


def _check_model_path(model: Path) -> None:
    from ssdtrt.core.errors import CheckpointError, ManifestError

    if not model.exists():
        cls = CheckpointError if model.suffix.lower() in (".pt", ".pth") else ManifestError
        raise cls(f"{model}: no such model file")


def _runner_options(model: Path, backend: str | None, device: str | None) -> dict[str, Any]:
    """`--device` (cpu | cuda[:i]) in each backend's own terms; nothing when not given (the backend's default)."""
    if device is None:
        return {}
    from ssdtrt.runtime import backend_for, runner_class

    device = device.lower()
    if device != "cpu" and not device.startswith("cuda"):
        raise typer.BadParameter(f"--device must be cpu or cuda[:index], not {device!r}")
    _, chosen = backend_for(model, backend)
    index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else None
    return runner_class(chosen).device_options(index)


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

    from ssdtrt.inference.detector import Detector

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


def _progress(con: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class ImagesPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.1f} images/s")

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), ImagesPerSecond(), TimeElapsedColumn(),
        console=con, disable=not con.is_terminal, transient=False,
    )


def _estimate_total(sources: list[Any]) -> int | None:
    from ssdtrt.io.images import video_frame_count

    total = 0
    for src in sources:
        total += max(video_frame_count(src.path), 1) if src.kind == "video" else 1  # a bad video: 1 error
    return total or None


def _run_stream(detector: Detector, sources: list[Any], sink: Any, batch_size: int | None, advance: Any) -> None:
    """Throughput mode: decode, preprocess, several inference requests and postprocess overlapped, in input order."""
    for result in detector.stream(sources, batch_size=batch_size, on_error="yield"):
        if result.ok:
            sink.add(result.name, result.image_rgb, result.detections, result.path, result.frame)
        else:
            sink.error(result.error, result.path)
        advance(1)


def _run_sequential(detector: Detector, sources: list[Any], sink: Any, advance: Any) -> None:
    """The one-stage-after-another path (`--sequential`): read ahead in a thread, then detect batch by batch."""
    from ssdtrt.io.images import iter_inputs, prefetch

    pending: list[InputItem] = []

    def flush() -> None:
        images: list[np.ndarray] = [it.image_rgb for it in pending]  # type: ignore[misc]
        for item, dets in zip(pending, detector.detect(images)):
            sink.add(item.name, item.image_rgb, dets, item.path, item.frame)
            advance(1)
        pending.clear()

    for item in prefetch(iter_inputs(sources), depth=2 * detector.batch_size):
        if not item.ok:
            if pending:
                flush()  # keep the output order (a video's frames before its own error)
            sink.error(item.error, item.path)
            advance(1)
            continue
        pending.append(item)
        if len(pending) >= detector.batch_size:
            flush()
    if pending:
        flush()
