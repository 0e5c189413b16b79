"""A checkpoint as a runner: the PyTorch model behind the same interface as the engines (outputs like a raw export).

    with TorchRunner("runs/demo/model.pt", device="cuda") as runner:
        outputs = runner.infer({"images": batch})            # {"locs": [N, P, 4], "logits": [N, P, C]}
        heads = runner.infer_torch({"images": cuda_batch})   # torch tensors stay on the device

torch is imported when a TorchRunner is created (never by `ssdtrt.runtime` itself); the manifest is synthesized
from the checkpoint (kind `checkpoint`, export mode `raw`). `TorchRunner.from_model(model)` runs a model already in
memory (the training loop's evaluation): eval mode while active, its training mode back on `deactivate`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.errors import BackendUnavailableError, CheckpointError
from ssdtrt.core.manifest import Manifest, TensorInfo, tool_versions
from ssdtrt.runtime.base import Runner, TensorMeta

INPUT_NAME = "images"
OUTPUT_NAMES = ("locs", "logits")


def checkpoint_manifest(path: Path | None, model: Any, precision: str = "fp32") -> Manifest:
    """The manifest a raw, dynamic-batch export of this checkpoint would have (kind `checkpoint`; `path` None: a
    model in memory, no file to name or hash)."""
    from ssdtrt.io.files import sha256_file

    spec = model.spec
    spec_json = json.loads(json.dumps(spec.to_dict()))  # lists, as a manifest read from disk has them
    pre = spec.preprocess
    num_priors = spec.priors.num_priors
    return Manifest(
        artifact=path.name if path is not None else "<in-memory>",
        kind="checkpoint",
        spec=spec_json,
        num_classes=int(model.num_classes),
        class_names=list(model.class_names),
        export_mode="raw",
        precision=precision,
        inputs=[TensorInfo(INPUT_NAME, ["batch", 3, pre.height, pre.width], "float32", "NCHW")],
        outputs=[
            TensorInfo("locs", ["batch", num_priors, 4], "float32", "NP4"),
            TensorInfo("logits", ["batch", num_priors, int(model.num_classes)], "float32", "NPC"),
        ],
        postprocess=spec_json["postprocess"],
        source={**({"checkpoint": str(path), "sha256": sha256_file(path)} if path is not None else {}),
                **({"category_ids": list(model.category_ids)} if getattr(model, "category_ids", None) else {})},
        tools=tool_versions("torch", "torchvision"),
    )


class TorchRunner(Runner):
    """An ssdtrt checkpoint in eval mode on `device` (cpu / cuda[:i]); optional bf16 autocast."""

    backend = "torch"

    def __init__(
        self,
        checkpoint_path: str | os.PathLike[str] | None,
        *,
        device: str = "cpu",
        autocast_bf16: bool = False,
        model: Any = None,
    ) -> None:
        self.path: Path | None = None if checkpoint_path is None else Path(checkpoint_path)
        if model is None and (self.path is None or not self.path.is_file()):
            raise CheckpointError(f"{self.path}: no such checkpoint file")
        self.device = str(device)
        self.autocast_bf16 = autocast_bf16
        self._was_training = False
        self._torch: Any = self._import_torch()
        self.model = model if model is not None else self._load()
        super().__init__(checkpoint_manifest(self.path, self.model, "bf16" if autocast_bf16 else "fp32"))

    @classmethod
    def from_model(cls, model: Any, device: str = "cpu", *, autocast_bf16: bool = False) -> TorchRunner:
        """A runner over an SSD model already in memory (with `.spec`, `.num_classes`, `.class_names`) on `device`:
        nothing on disk to verify; its training mode comes back on `deactivate`."""
        return cls(None, device=device, autocast_bf16=autocast_bf16, model=model)

    @classmethod
    def device_options(cls, device_index: int | None) -> dict[str, Any]:
        return {"device": "cpu" if device_index is None else f"cuda:{device_index}"}

    def _import_torch(self) -> Any:
        try:
            import torch
        except ImportError as err:
            raise BackendUnavailableError("the torch backend needs PyTorch: pip install torch") from err
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {self.device!r} requested but torch sees no CUDA GPU")
        return torch

    def _load(self) -> Any:
        from ssdtrt.model.checkpoint import load_model

        return load_model(self.path, self.device)

    def _activate(self) -> None:
        self._was_training = bool(self.model.training)
        self.model.eval()

    def infer_torch(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Torch tensors in (on any device), torch tensors out on the model's device — no host copies."""
        if not self.is_active:
            self.activate()
        torch = self._torch
        images = feeds[INPUT_NAME].to(self.device, dtype=torch.float32, non_blocking=True)
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            locs, logits = self.model(images)
        return {"locs": locs.float(), "logits": logits.float()}

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if INPUT_NAME not in feeds:
            raise KeyError(f"the torch runner expects the input {INPUT_NAME!r}, got {sorted(feeds)}")
        images = self._torch.from_numpy(np.ascontiguousarray(feeds[INPUT_NAME], dtype=np.float32))
        out = self.infer_torch({INPUT_NAME: images})
        return {name: out[name].cpu().numpy() for name in OUTPUT_NAMES}

    def infer_timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """On a GPU, CUDA-event times of the host-to-device copy, the model and the device-to-host copy (ms)."""
        if not self.device.startswith("cuda"):
            return super().infer_timed(feeds)
        if not self.is_active:
            self.activate()
        torch = self._torch
        # Record on the model's GPU stream: a bare `record()` uses the calling thread's current device, which for
        # device="cuda:1" is still GPU 0 and would time nothing the model does.
        stream = torch.cuda.current_stream(torch.device(self.device))
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        events[0].record(stream)
        images = torch.from_numpy(np.ascontiguousarray(feeds[INPUT_NAME], dtype=np.float32)).to(self.device)
        events[1].record(stream)
        out = self.infer_torch({INPUT_NAME: images})
        events[2].record(stream)
        host = {name: out[name].cpu().numpy() for name in OUTPUT_NAMES}
        events[3].record(stream)
        events[3].synchronize()
        stages = ("h2d", "inference", "d2h")
        return host, {stage: float(a.elapsed_time(b)) for stage, (a, b) in zip(stages, zip(events, events[1:]))}

    def _deactivate(self) -> None:
        self.model.train(self._was_training)
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    def input_metadata(self) -> dict[str, TensorMeta]:
        return {t.name: TensorMeta(t.name, np.dtype(t.dtype), tuple(t.shape)) for t in self.manifest.inputs}

    def describe(self) -> dict[str, Any]:
        info = {**super().describe(), "device": self.device, "autocast_bf16": self.autocast_bf16}
        info["torch_threads"] = int(self._torch.get_num_threads())
        return info
