"""The deployment path works with torch absent: a subprocess blocks `import torch` and runs the runtime, the numpy
postprocess, the Detector pipeline and `ssdtrt detect` on ONNX models exported here (with torch), then the results
are compared to the torch model + `ssdtrt.postprocess.host_torch` computed in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.integration  # subprocesses with `import torch` blocked

ROOT = Path(__file__).resolve().parents[2]
CLASS_NAMES = ("cat", "dog", "car", "bus", "tree", "sign")

#: Child prologue: any `import torch...` fails, as on a host where torch is not installed.
BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name == "torchvision" or name.startswith("torchvision."):
            raise ImportError(f"No module named {name!r} (blocked by the torch-free test)")
        return None
sys.meta_path.insert(0, _NoTorch())
for _m in [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision"))]:
    del sys.modules[_m]
"""

CHILD = """
import json, sys
import cv2, numpy as np
from ssdtrt.inference.detector import Detector
from ssdtrt.postprocess.host_numpy import postprocess_numpy
from ssdtrt.runtime import open_runner
from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner
from ssdtrt.io.images import read_image
import ssdtrt.io.draw, ssdtrt.io.cocojson, ssdtrt.core.manifest, ssdtrt.preprocess.host, ssdtrt.core.priors, ssdtrt.core.config

try:
    import torch  # noqa: F401
    raise SystemExit("torch imported although blocked")
except ImportError:
    pass

args = json.loads(sys.argv[1])
images = [read_image(p) for p in args["images"]]
out = {}
for mode, path in args["models"].items():
    runner = open_runner(path, providers=["CPUExecutionProvider"])
    assert isinstance(runner, OnnxRuntimeRunner), type(runner)
    with Detector(runner, batch_size=2) as det:
        dets = det.detect(images)
    out[mode] = [{"boxes": d.boxes.tolist(), "scores": d.scores.tolist(), "labels": d.labels.tolist(),
                  "names": d.names()} for d in dets]
from ssdtrt.cli.app import main
code = main(["detect", args["models"]["raw"], *args["images"], "--out", args["out"], "--score-threshold", "0.05"])
out["cli_exit"] = code
out["torch_loaded"] = [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, dict[str, Path]]:
    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    model = build_model("ssd-small", class_names=CLASS_NAMES).eval()
    folder = tmp_path_factory.mktemp("torchfree")
    paths = {
        mode: export_model(model, folder / f"m_{mode}.onnx", mode=mode, dynamic_batch=True).onnx_path
        for mode in ("raw", "decoded", "nms")
    }
    return model, paths


def write_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    paths = []
    for i, (h, w) in enumerate(((200, 260), (90, 140), (160, 160))):
        small = rng.integers(0, 256, (max(h // 16, 3), max(w // 16, 3), 3), dtype=np.uint8)
        img = np.clip(cv2.resize(small, (w, h)).astype(np.int16) + rng.integers(-12, 13, (h, w, 3)), 0, 255)
        paths.append(folder / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), img.astype(np.uint8))
    return paths


def torch_reference(model: torch.nn.Module, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    from ssdtrt.postprocess.host_torch import postprocess_spec
    from ssdtrt.preprocess.host import preprocess_images
    from ssdtrt.core.priors import default_boxes

    with torch.no_grad():
        locs, logits = model(torch.from_numpy(preprocess_images(images, model.spec.preprocess)))
    dets = postprocess_spec(locs, logits, default_boxes(model.spec), model.spec.postprocess, variances=model.spec.variances)
    return [
        {"boxes": (d.boxes * torch.tensor([w, h, w, h])).numpy(), "scores": d.scores.numpy(), "labels": d.labels.numpy()}
        for d, (h, w) in zip(dets, [img.shape[:2] for img in images])
    ]


def test_pipeline_and_cli_without_torch(exported: tuple[torch.nn.Module, dict[str, Path]], tmp_path: Path) -> None:
    model, paths = exported
    image_paths = write_images(tmp_path)
    out_dir = tmp_path / "out"
    args = {"images": [str(p) for p in image_paths], "models": {m: str(p) for m, p in paths.items()},
            "out": str(out_dir)}
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(CHILD), json.dumps(args)], capture_output=True,
        text=True, timeout=300, env={**os.environ, "PYTHONPATH": pythonpath}, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["torch_loaded"] == []
    assert result["cli_exit"] == 0
    assert (out_dir / "detections.json").is_file() and (out_dir / "img0.png").is_file()

    from ssdtrt.io.images import read_image

    images = [read_image(p) for p in image_paths]
    ref = torch_reference(model, images)
    assert sum(len(r["scores"]) for r in ref) > 50
    for mode in ("raw", "decoded", "nms"):
        for got, want, img in zip(result[mode], ref, images):
            assert len(got["scores"]) == len(want["scores"]), mode
            tol = 1e-4 * max(img.shape[:2])
            np.testing.assert_allclose(np.asarray(got["boxes"]).reshape(-1, 4), want["boxes"], atol=tol, rtol=0)
            np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-4, rtol=0)
            np.testing.assert_array_equal(got["labels"], want["labels"])
            assert got["names"] == [CLASS_NAMES[label - 1] for label in want["labels"]]
