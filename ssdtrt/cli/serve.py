"""`ssdtrt serve` (a Detector in Triton via PyTriton) and `ssdtrt export-triton` (a Triton model repository)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ssdtrt.cli.common import NoVerifyOption

ScoreOption = Annotated[Optional[float], typer.Option("--score-threshold", help="Override the manifest's score threshold.")]  # noqa: UP007
IouOption = Annotated[Optional[float], typer.Option("--iou-threshold", help="Override the manifest's NMS IoU threshold.")]  # noqa: UP007
MaxDetOption = Annotated[Optional[int], typer.Option("--max-detections", help="Override K, the detections per image (outputs are padded to K).")]  # noqa: UP007
MaxBatchOption = Annotated[int, typer.Option("--max-batch-size", min=1, help="Largest batch Triton's dynamic batcher forms.")]
DelayOption = Annotated[int, typer.Option("--max-queue-delay-us", min=0, help="How long the dynamic batcher waits to fill a batch (microseconds).")]
NameOption = Annotated[str, typer.Option("--model-name", help="Name clients call the model by.")]
ServeEnvOption = Annotated[Optional[Path], typer.Option("--serve-env", help="Serving environment (PyTriton + numpy<2 for Triton's python-backend stub; default: $SSDTRT_SERVE_ENV, else ssdtrt-serve-env inside this venv). Created on first use.")]  # noqa: UP007


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("export-triton")(export_triton_cmd)
    app.command("serve-env")(serve_env_cmd)


def serve_cmd(
    model: Annotated[Path, typer.Argument(help="Checkpoint (.pt), ONNX, OpenVINO .xml or TensorRT .plan (anything Detector opens).")],
    host: Annotated[str, typer.Option("--host", help="Address to bind (HTTP, gRPC and metrics). 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option("--http-port", help="HTTP/REST port.")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port", help="Prometheus metrics port.")] = 8002,
    max_batch_size: MaxBatchOption = 16,
    max_queue_delay_us: DelayOption = 2000,
    instances: Annotated[int, typer.Option("--instances", min=1, help="Model instances (one Detector each) serving batches in parallel.")] = 1,
    model_name: NameOption = "ssd",
    backend: Annotated[Optional[str], typer.Option("--backend", help="Runner: torch, onnxruntime, openvino, tensorrt (default: by file type).")] = None,  # noqa: UP007
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads of each instance's runner (default: the backend's, all cores).")] = None,  # noqa: UP007
    score_threshold: ScoreOption = None,
    iou_threshold: IouOption = None,
    max_detections: MaxDetOption = None,
    no_verify: NoVerifyOption = False,
    serve_env: ServeEnvOption = None,
) -> None:
    """Serve a model with NVIDIA Triton (PyTriton) and dynamic batching, over HTTP and gRPC, until Ctrl-C/SIGTERM.

    Input `image` (BYTES, one encoded image per row); outputs `num_detections`, `boxes` (xyxy pixels), `scores`,
    `labels`, padded to --max-detections (see README "Serve at scale"). In-flight requests are answered on stop."""
    from ssdtrt.cli.common import console
    from ssdtrt.runtime import backend_for
    from ssdtrt.serve.pytriton_app import ServeSettings, serve

    _, chosen = backend_for(model, backend)
    options = {}
    if threads is not None:
        options = {"intra_op_threads": threads} if chosen == "onnxruntime" else {"num_threads": threads} if chosen == "openvino" else {}
    err = console(stderr=True)
    env = _ready_serve_env(serve_env, err)
    settings = ServeSettings(
        host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, model_name=model_name,
        max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, instances=instances,
        score_threshold=score_threshold, iou_threshold=iou_threshold, max_detections=max_detections,
        backend=backend, runner_options=options, verify_hash=not no_verify,
        serve_env=str(env),
    )

    def ready() -> None:
        err.print(f"serving [bold]{model_name}[/] ({model.name}) — HTTP {host}:{http_port}, gRPC {host}:{grpc_port}, "
                  f"metrics {host}:{metrics_port}; Ctrl-C or SIGTERM stops", highlight=False)

    serve(model, settings, on_ready=ready)
    err.print("stopped")


def serve_env_cmd(
    path: Annotated[Optional[Path], typer.Option("--path", help="Where (default: $SSDTRT_SERVE_ENV, else ssdtrt-serve-env inside this venv, else ~/.cache/ssdtrt).")] = None,  # noqa: UP007
) -> None:
    """Create the serving environment `ssdtrt serve` runs Triton's side in: PyTriton and numpy<2 (Triton 2.51's
    python-backend stub garbles tensors under numpy 2), so this environment keeps its numpy. Needs the package index
    once; a ready one is left as it is."""
    from ssdtrt.cli.common import console
    from ssdtrt.serve import serve_env

    err = console(stderr=True)
    env = serve_env.create(path or serve_env.default_serve_env(), progress=lambda m: err.print(m, highlight=False, soft_wrap=True))
    console().print(f"serving environment: {env} (ready)", highlight=False, soft_wrap=True)


def _ready_serve_env(path: Path | None, err: Any) -> Path:
    """The serving env `serve` will use, created here on first use (with a progress line) when PyTriton or the stub
    needs it."""
    import importlib.util

    from ssdtrt.serve import serve_env

    env = serve_env.absolute(path) if path else serve_env.default_serve_env()
    needed = serve_env.stub_needs_own_env() or importlib.util.find_spec("pytriton") is None
    if needed and not serve_env.is_ready(env):
        err.print(f"first use of ssdtrt serve: setting up its serving environment at {env} "
                  "(PyTriton; numpy<2 for Triton's stub, this environment keeps its numpy) — once", highlight=False, soft_wrap=True)
        serve_env.create(env, progress=lambda m: err.print(m, highlight=False, soft_wrap=True))
    return env


def export_triton_cmd(
    model: Annotated[Path, typer.Argument(help="Exported model: ONNX (--dynamic-batch), OpenVINO .xml or TensorRT .plan, with its manifest.")],
    out: Annotated[Path, typer.Option("--out", help="Repository folder to write (created if missing).")],
    detector: Annotated[str, typer.Option("--detector", help="tensorrt | onnxruntime | openvino | python (ssdtrt's runner in Triton's python backend: CPU, runs on the PyTriton tritonserver).")] = "tensorrt",
    max_batch_size: MaxBatchOption = 16,
    max_queue_delay_us: DelayOption = 2000,
    instances: Annotated[int, typer.Option("--instances", min=1, help="Instances of the python pre/postprocess models.")] = 1,
    detector_instances: Annotated[int, typer.Option("--detector-instances", min=1, help="Instances of the detector (per GPU for tensorrt).")] = 1,
    model_name: NameOption = "ssd",
    runner: Annotated[Optional[str], typer.Option("--runner", help="--detector python only: onnxruntime or openvino (default: by file type).")] = None,  # noqa: UP007
    threads: Annotated[Optional[int], typer.Option("--threads", help="--detector python only: CPU threads of the runner.")] = None,  # noqa: UP007
    ssdtrt_path: Annotated[Optional[str], typer.Option("--ssdtrt-path", help="Folder put on the python models' sys.path when it exists (default: this ssdtrt's source folder; '' = use an ssdtrt installed in Triton's python).")] = None,  # noqa: UP007
    score_threshold: ScoreOption = None,
    iou_threshold: IouOption = None,
    max_detections: MaxDetOption = None,
    no_verify: NoVerifyOption = False,
) -> None:
    """Write a Triton model repository: ensemble MODEL_NAME = python preprocess → detector → python postprocess,
    same I/O contract as `ssdtrt serve`; its README says how to deploy it (and build the TensorRT plan). The model is
    checked against its manifest before it is copied; --no-verify skips the sha256 there and in the python detector."""
    import ssdtrt
    from ssdtrt.cli.common import console
    from ssdtrt.serve.repository import RepositorySettings, export_repository

    path = str(Path(ssdtrt.__file__).resolve().parent.parent) if ssdtrt_path is None else ssdtrt_path
    settings = RepositorySettings(
        detector=detector, model_name=model_name, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us,
        instances=instances, detector_instances=detector_instances, score_threshold=score_threshold,
        iou_threshold=iou_threshold, max_detections=max_detections, runner=runner, threads=threads, ssdtrt_path=path,
        verify_hash=not no_verify,
    )
    repo = export_repository(model, out, settings)
    con = console()
    con.print(f"repository: {repo} (ensemble [bold]{model_name}[/], detector {detector}); see {repo / 'README.md'}")
