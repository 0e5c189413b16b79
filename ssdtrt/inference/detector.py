"""`Detector`: RGB images → preprocess → runner → postprocess → Detections in pixels of each original image.

    with Detector("export/model.onnx", score_threshold=0.3) as det:
        for d in det.detect(images_rgb):                 # list[Detections], boxes xyxy in pixels, with class names
            print(d.boxes, d.scores, d.names())

The three stages are public (`preprocess`, `infer`, `postprocess`) so benchmarks can time each; `detect` composes
them and records `last_timings_ms`. Torch-free: torch is imported only for `postprocess_device="cuda"` or when a
runner hands back torch tensors (the TensorRT runner with torch buffers), so the postprocess runs on the engine's
output buffers without a device-to-host copy.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, fields, replace
from typing import Any

import numpy as np

from ssdtrt.core.config import ModelSpec, PostprocessSpec
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import BackendUnavailableError, ManifestError
from ssdtrt.core.manifest import Manifest
from ssdtrt.postprocess.host_numpy import postprocess_numpy
from ssdtrt.preprocess.host import preprocess_images
from ssdtrt.core.priors import default_boxes
from ssdtrt.runtime.base import Runner, TensorMeta

#: Output names per export mode (the export writes these; a runner may name them differently: then manifest order).
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "raw": ("locs", "logits"),
    "decoded": ("boxes", "scores"),
    "nms": ("num_detections", "boxes", "scores", "labels"),
}


class Detector:
    """A model (path or Runner) plus everything around it: preprocess, batching, postprocess, pixel scaling.

    model: checkpoint `.pt`, `.onnx`, OpenVINO `.xml`, TensorRT `.plan` (opened with `ssdtrt.runtime.open_runner`,
    `backend` and `runner_options` passed on), or an already-built Runner (not deactivated by `close`).
    score_threshold / iou_threshold / max_detections: override the manifest's postprocess settings (None keeps them).
    For an `nms` export the NMS is in the graph: a higher score threshold or fewer detections are applied on its
    output; a lower threshold, another IoU or more detections cannot be (a warning says so).
    batch_size: images per runner call in `detect` (a static-batch model is fed in chunks of its own batch, padded).
    postprocess_device: "cpu" (numpy) or "cuda[:i]" (torch on the GPU).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Runner,
        *,
        backend: str | None = None,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_detections: int | None = None,
        batch_size: int = 8,
        postprocess_device: str = "cpu",
        **runner_options: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if postprocess_device != "cpu" and not postprocess_device.startswith("cuda"):
            raise ValueError(f"postprocess_device must be 'cpu' or 'cuda[:index]', not {postprocess_device!r}")
        if postprocess_device != "cpu":
            _require_cuda(postprocess_device)
        if isinstance(model, Runner):
            self.runner, self._owns_runner = model, False
        else:
            from ssdtrt.runtime import open_runner

            self.runner, self._owns_runner = open_runner(model, backend=backend, **runner_options), True
        self.manifest: Manifest = self.runner.manifest
        self.export_mode = self.manifest.export_mode
        if self.export_mode not in OUTPUT_NAMES:
            raise ManifestError(f"unknown export mode {self.export_mode!r} in the manifest")
        self.spec: ModelSpec = self.manifest.model_spec
        self.class_names: tuple[str, ...] = tuple(self.manifest.class_names)
        self.batch_size = int(batch_size)
        self.postprocess_device = postprocess_device
        self.baked_settings = _settings_from(self.manifest.postprocess, self.spec.postprocess)
        overrides = {"score_threshold": score_threshold, "iou_threshold": iou_threshold, "max_detections": max_detections}
        self.settings: PostprocessSpec = replace(self.baked_settings, **{k: v for k, v in overrides.items() if v is not None})
        if self.export_mode == "nms":
            self._warn_unappliable(overrides)
        self.priors_cxcywh: np.ndarray | None = default_boxes(self.spec) if self.export_mode == "raw" else None
        meta = self.runner.input_metadata()
        if len(meta) != 1:
            raise ManifestError(f"expected a model with one image input, found inputs {sorted(meta)}")
        self.input: TensorMeta = next(iter(meta.values()))
        batch_dim = self.input.shape[0] if self.input.shape else None
        self.static_batch: int | None = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.last_timings_ms: dict[str, float] = {}
        self.stream_batch: int | None = None  # images per request of `stream` when not given (set on first use)
        # GPU postprocess + a runner that can hand back device tensors (torch runner, TensorRT with torch buffers):
        # NMS then reads the engine's outputs in place, no device-to-host copy.
        self.device_outputs = (
            postprocess_device.startswith("cuda")
            and callable(getattr(self.runner, "infer_torch", None))
            and getattr(self.runner, "buffers", "torch") == "torch"
        )

    # ------------------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Detector:
        self.runner.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the runner if this Detector opened it."""
        if self._owns_runner:
            self.runner.deactivate()

    # ------------------------------------------------------------------------------------------ stages
    def preprocess(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB images of any sizes → one NCHW batch in the runner's input dtype."""
        if len(images_rgb) == 0:
            raise ValueError("preprocess needs at least one image")
        batch = preprocess_images(images_rgb, self.spec.preprocess)
        dtype = np.dtype(self.input.dtype)
        return batch if batch.dtype == dtype else batch.astype(dtype)

    def infer(self, batch: np.ndarray) -> dict[str, Any]:
        """Run the runner on a batch of any size (split / zero-padded to a static batch; padding rows dropped).

        Host numpy arrays by name, or device torch tensors when `device_outputs` (GPU postprocess on them).
        """
        return self.infer_timed(batch)[0]

    def infer_timed(self, batch: np.ndarray) -> tuple[dict[str, Any], dict[str, float]]:
        """`infer` plus milliseconds per stage, summed over static-batch chunks: "inference", and on GPU runners
        "h2d" / "d2h" timed with CUDA events (what `ssdtrt bench latency` reports)."""
        n = int(batch.shape[0])
        step = self.static_batch
        if step is None or step == n:
            return self._run({self.input.name: batch})
        parts: list[dict[str, Any]] = []
        stages: dict[str, float] = {}
        for start in range(0, n, step):
            chunk = batch[start : start + step]
            real = chunk.shape[0]
            if real < step:
                pad = np.zeros((step - real, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            out, ms = self._run({self.input.name: chunk})
            parts.append({k: v[:real] for k, v in out.items()})
            for stage, value in ms.items():
                stages[stage] = stages.get(stage, 0.0) + value
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}, stages

    def postprocess(self, outputs: dict[str, Any], image_sizes_hw: Sequence[tuple[int, int]]) -> list[Detections]:
        """Runner outputs → numpy Detections per image, boxes xyxy in pixels of (height, width) `image_sizes_hw`."""
        named = self._outputs_by_role(outputs)
        if self.export_mode == "nms":
            dets = self._unpad_nms(named)
        else:
            dets = self._decode_nms(named)
        if len(dets) != len(image_sizes_hw):
            raise ValueError(f"{len(dets)} results for {len(image_sizes_hw)} image sizes")
        return [
            Detections(*_pixels(d, h, w), class_names=self.class_names) for d, (h, w) in zip(dets, image_sizes_hw)
        ]

    def detect(self, images_rgb: Sequence[np.ndarray]) -> list[Detections]:
        """Detections of every image, in order, in pixel coordinates (batches of `batch_size`)."""
        timings = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
        results: list[Detections] = []
        for start in range(0, len(images_rgb), self.batch_size):
            chunk = images_rgb[start : start + self.batch_size]
            t0 = time.perf_counter()
            batch = self.preprocess(chunk)
            t1 = time.perf_counter()
            outputs = self.infer(batch)
            t2 = time.perf_counter()
            results.extend(self.postprocess(outputs, [img.shape[:2] for img in chunk]))
            t3 = time.perf_counter()
            timings["preprocess"] += (t1 - t0) * 1e3
            timings["infer"] += (t2 - t1) * 1e3
            timings["postprocess"] += (t3 - t2) * 1e3
        self.last_timings_ms = timings
        return results

    def stream(
        self,
        inputs: Iterable[Any],
        *,
        batch_size: int | None = None,
        in_flight: int | None = None,
        on_error: str = "raise",
    ) -> Iterator[Any]:
        """Throughput mode: `StreamResult`s (name, image_rgb, detections in pixels) for every decoded image, image
        path or video path (one per frame) of `inputs`, in input order, with decoding, preprocess, several inference
        requests and postprocess overlapped; memory bounded by the queue depth. See `ssdtrt.stream`.

        batch_size / in_flight: None = the backend's choice. on_error: "raise" or "yield" unreadable inputs.
        """
        from ssdtrt.stream import StreamSettings, stream_detect

        settings = StreamSettings(batch_size=batch_size, in_flight=in_flight, on_error=on_error)
        return stream_detect(self, inputs, settings)

    def describe(self) -> dict[str, Any]:
        """Settings for reports: backend, precision, export mode, effective postprocess."""
        return {
            **self.runner.describe(),
            "export_mode": self.export_mode,
            "batch_size": self.batch_size,
            "static_batch": self.static_batch,
            "postprocess_device": self.postprocess_device,
            "postprocess": asdict(self.settings),
        }

    # ------------------------------------------------------------------------------------------ internals
    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, float]]:
        if not self.device_outputs:
            return self.runner.infer_timed(feeds)
        import torch

        start = time.perf_counter()
        out = self.runner.infer_torch({k: torch.from_numpy(v) for k, v in feeds.items()})  # type: ignore[attr-defined]
        torch.cuda.synchronize()
        return out, {"inference": (time.perf_counter() - start) * 1e3}

    def _outputs_by_role(self, outputs: dict[str, Any]) -> list[Any]:
        roles = OUTPUT_NAMES[self.export_mode]
        if all(r in outputs for r in roles):
            return [outputs[r] for r in roles]
        ordered = [outputs[t.name] for t in self.manifest.outputs if t.name in outputs]
        if len(ordered) != len(roles):
            raise ManifestError(
                f"a {self.export_mode} model should give outputs {list(roles)}, the runner gave {sorted(outputs)}"
            )
        return ordered

    def _decode_nms(self, named: list[Any]) -> list[Detections]:
        s = self.settings
        kwargs: dict[str, Any] = dict(
            score_threshold=s.score_threshold,
            iou_threshold=s.iou_threshold,
            topk_candidates=s.topk_candidates,
            candidates_per_class=s.candidates_per_class,
            max_detections=s.max_detections,
            min_size=s.min_size,
            variances=self.spec.variances,
            scores_are_probs=self.export_mode == "decoded",
            boxes_are_decoded=self.export_mode == "decoded",
        )
        priors = self.priors_cxcywh if self.priors_cxcywh is not None else np.zeros((0, 4), np.float32)
        locs, logits = named
        if self.postprocess_device.startswith("cuda") or not (_is_numpy(locs) and _is_numpy(logits)):
            import torch

            from ssdtrt.postprocess.host_torch import postprocess

            device = self.postprocess_device if self.postprocess_device != "cpu" else None
            locs_t, logits_t = (torch.as_tensor(x, device=device) for x in (locs, logits))
            return [d.numpy() for d in postprocess(locs_t, logits_t, priors, **kwargs)]
        return postprocess_numpy(np.asarray(locs), np.asarray(logits), priors, **kwargs)

    def _unpad_nms(self, named: list[Any]) -> list[Detections]:
        num, boxes, scores, labels = (_host(x) for x in named)
        keep_k = min(self.settings.max_detections, boxes.shape[1])
        out = []
        for i in range(boxes.shape[0]):  # per image: un-pad (K is small and fixed)
            n = int(min(max(int(num[i]), 0), boxes.shape[1]))
            b, s, lab = boxes[i, :n].astype(np.float32), scores[i, :n].astype(np.float32), labels[i, :n]
            order = np.argsort(-s, kind="stable")
            b, s, lab = b[order], s[order], lab[order]
            ok = s > np.float32(self.settings.score_threshold)
            out.append(Detections(b[ok][:keep_k], s[ok][:keep_k], lab[ok][:keep_k].astype(np.int64)))
        return out

    def _warn_unappliable(self, overrides: dict[str, Any]) -> None:
        baked = self.baked_settings
        problems = []
        if overrides["score_threshold"] is not None and overrides["score_threshold"] < baked.score_threshold:
            problems.append(f"score threshold {overrides['score_threshold']} < {baked.score_threshold} in the graph")
        if overrides["iou_threshold"] is not None and overrides["iou_threshold"] != baked.iou_threshold:
            problems.append(f"IoU threshold {overrides['iou_threshold']} != {baked.iou_threshold} in the graph")
        if overrides["max_detections"] is not None and overrides["max_detections"] > baked.max_detections:
            problems.append(f"max detections {overrides['max_detections']} > {baked.max_detections} in the graph")
        if problems:
            warnings.warn(
                "NMS is baked into this model; cannot apply " + "; ".join(problems) + " (export without NMS to change it)",
                stacklevel=3,
            )
        self.settings = replace(
            self.settings,
            score_threshold=max(self.settings.score_threshold, baked.score_threshold),
            iou_threshold=baked.iou_threshold,
            max_detections=min(self.settings.max_detections, baked.max_detections),
        )


def _require_cuda(device: str) -> None:
    """GPU postprocess needs torch with a visible CUDA device: say so in one line instead of failing mid-run."""
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailableError(
            f"postprocess on {device} needs torch with CUDA (pip install torch); use postprocess_device='cpu'"
        ) from err
    if not torch.cuda.is_available():
        raise BackendUnavailableError(f"postprocess on {device}: no CUDA GPU visible to torch (use the CPU)")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise BackendUnavailableError(f"{device}: only {torch.cuda.device_count()} CUDA device(s) visible")


def _settings_from(manifest_postprocess: dict[str, Any], default: PostprocessSpec) -> PostprocessSpec:
    """The manifest's postprocess settings (what the export used or baked in), else the preset's defaults."""
    known = {f.name for f in fields(PostprocessSpec)}
    given = {k: v for k, v in (manifest_postprocess or {}).items() if k in known}
    return replace(default, **given)


def _pixels(d: Detections, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = np.asarray([width, height, width, height], dtype=np.float32)
    d = d.numpy()
    return np.asarray(d.boxes, dtype=np.float32) * scale, np.asarray(d.scores, np.float32), np.asarray(d.labels, np.int64)


def _is_numpy(x: Any) -> bool:
    return isinstance(x, np.ndarray)


def _host(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()


def _concat(parts: list[Any]) -> Any:
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    import torch

    return torch.cat([torch.as_tensor(p) for p in parts])
