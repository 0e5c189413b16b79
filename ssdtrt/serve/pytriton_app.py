"""`ssdtrt serve`: a `Detector` bound into NVIDIA Triton (PyTriton's bundled `tritonserver`) with dynamic batching.

A thin binding, not a second pipeline: every batch Triton forms is decoded row by row (a bad image only marks its
own row) and the good images go through one `Detector.detect` call. PyTriton is imported lazily (serve extra).

Set-up traps handled here: PyTriton's python-backend stub links libpython, so the running interpreter's LIBDIR goes
on LD_LIBRARY_PATH; SIGTERM is turned into the same clean stop as Ctrl-C (in-flight requests answered, the
`tritonserver` child stopped), because Python's default SIGTERM would leave that child running.
"""

from __future__ import annotations

import logging
import os
import signal
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssdtrt.core.errors import BackendUnavailableError
from ssdtrt.serve import contract

LOG = logging.getLogger("ssdtrt.serve")


@dataclass(frozen=True)
class ServeSettings:
    """What `ssdtrt serve` exposes (the CLI options). The defaults are Triton's usual ports on 127.0.0.1 only;
    `runner_options` go to each instance's runner (e.g. intra_op_threads / num_threads); `verify_hash`: check the
    model's sha256 against its manifest when each instance opens it (the size is always checked)."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_name: str = "ssd"
    max_batch_size: int = 16
    max_queue_delay_us: int = 2000
    instances: int = 1
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    backend: str | None = None
    runner_options: dict[str, Any] = field(default_factory=dict)
    verify_hash: bool = True


def ensure_libpython_on_ld_path(env: dict[str, str] | None = None) -> dict[str, str]:
    """Put this interpreter's LIBDIR first on LD_LIBRARY_PATH (pytriton issue #51): the stub Triton starts loads
    libpython3.x, which a pyenv/conda/venv interpreter keeps outside the system's library path."""
    env = os.environ if env is None else env
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        if libdir not in parts:
            env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *parts])
    return env  # type: ignore[return-value]


def make_infer_func(detector: Any, max_detections: int) -> Callable[[list[Any]], list[dict[str, np.ndarray]]]:
    """The PyTriton callable for one Detector: every row of every request in the batch Triton formed → one
    `detector.detect` over the decodable images → one response per request.

    PyTriton 0.7 can only fail a whole batch, so a request whose image does not decode gets `num_detections` = -1
    and its message in the extra `error` output; the others of the batch get their detections."""

    def infer(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        rows: list[np.ndarray] = []
        owner: list[int] = []
        for r, request in enumerate(requests):
            data = np.asarray(request[contract.INPUT_NAME])
            for row in data.reshape(data.shape[0], -1):
                rows.append(row)
                owner.append(r)
        names = [contract.INPUT_NAME] * len(rows)
        decoded = contract.decode_rows(rows, names)
        dets = detector.detect(decoded.images_rgb) if decoded.images_rgb else []
        packed = contract.pack_detections(dets, max_detections)
        full = {k: np.zeros((len(rows), *v.shape[1:]), v.dtype) for k, v in packed.items()}
        if decoded.rows:
            for k, v in packed.items():
                full[k][decoded.rows] = v
        errors = np.full((len(rows), 1), b"", dtype=object)
        for i, message in decoded.errors.items():
            full["num_detections"][i, 0] = -1
            errors[i, 0] = message.encode()
        out_owner = np.asarray(owner)
        return [{**{k: v[out_owner == r] for k, v in full.items()}, "error": errors[out_owner == r]}
                for r in range(len(requests))]

    return infer


def serve(model: str | os.PathLike[str], settings: ServeSettings, *, on_ready: Callable[[], None] | None = None) -> None:
    """Open `settings.instances` Detectors on `model`, bind them into PyTriton and block until SIGINT/SIGTERM."""
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    except ImportError as err:
        raise BackendUnavailableError(
            f"ssdtrt serve needs PyTriton ({err.name or err}): pip install 'ssdtrt[serve]' (numpy<2 is required by it)"
        ) from None
    from ssdtrt.inference.detector import Detector
    from ssdtrt.postprocess.settings import override_values

    ensure_libpython_on_ld_path()
    detectors = [
        Detector(model, backend=settings.backend, **override_values(settings), batch_size=settings.max_batch_size,
                 verify_hash=settings.verify_hash, **settings.runner_options)
        for _ in range(max(1, settings.instances))
    ]
    k = detectors[0].settings.max_detections
    dims = contract.output_dims(k)
    outputs = [
        Tensor(name="num_detections", dtype=np.int32, shape=tuple(dims["num_detections"])),
        Tensor(name="boxes", dtype=np.float32, shape=tuple(dims["boxes"])),
        Tensor(name="scores", dtype=np.float32, shape=tuple(dims["scores"])),
        Tensor(name="labels", dtype=np.int32, shape=tuple(dims["labels"])),
        Tensor(name="error", dtype=bytes, shape=(1,)),
    ]
    config = ModelConfig(
        max_batch_size=settings.max_batch_size,
        batcher=DynamicBatcher(max_queue_delay_microseconds=settings.max_queue_delay_us),
    )
    triton_config = TritonConfig(
        http_address=settings.host, http_port=settings.http_port, grpc_address=settings.host,
        grpc_port=settings.grpc_port, metrics_address=settings.host, metrics_port=settings.metrics_port,
        exit_timeout_secs=30,
    )
    # both signals explicitly: a shell starting the server in the background leaves SIGINT ignored
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for det in detectors:
            det.runner.activate()
        # statistics stay readable (ssdtrt bench serve reads the batch sizes); the mutating endpoints keep
        # PyTriton's token protection
        security = TritonSecurityConfig(restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"])
        # no `with Triton()`: entering it starts the server and `bind` would load the model before the class
        # names are in its config
        triton = Triton(config=triton_config, security_config=security)
        try:
            triton.bind(
                model_name=settings.model_name,
                infer_func=[make_infer_func(det, k) for det in detectors],
                inputs=[Tensor(name=contract.INPUT_NAME, dtype=bytes, shape=(1,))],
                outputs=outputs,
                config=config,
                strict=False,
            )
            _publish_class_names(triton, detectors[0].class_names)
            triton.run()
            if on_ready is not None:
                on_ready()
            triton.serve()
        finally:
            triton.stop()
    except KeyboardInterrupt:
        LOG.info("stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for det in detectors:
            det.close()


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    """SIGINT/SIGTERM → KeyboardInterrupt: PyTriton stops tritonserver (draining in-flight requests)."""
    raise KeyboardInterrupt


def _publish_class_names(triton: Any, class_names: Sequence[str]) -> None:
    """Put the class names into the bound model's config parameters (`class_names`, a JSON list).

    PyTriton's public ModelConfig has no free parameters; the config it generates keeps `backend_parameters`, so
    they are added there and the config (written at `bind`) is generated again before `run()` loads it."""
    LOG.info("class names (label L = names[L-1]): %s", contract.class_names_json(class_names))
    manager = getattr(triton, "_model_manager", None)
    store = getattr(manager, "_model_store_path", None)
    for model in getattr(manager, "models", []):
        config = model._get_triton_model_config()
        config.backend_parameters[contract.CLASS_NAMES_PARAMETER] = contract.class_names_json(class_names)
        if store is not None:
            model.generate_model(store)
