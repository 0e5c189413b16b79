"""The serving I/O contract shared by `ssdtrt serve` (PyTriton), the `export-triton` repository and the clients.

One request row = one encoded image; one response row = its detections padded to K = max_detections:

    input   image           BYTES  [1]      JPEG/PNG/BMP/WebP/... bytes
    output  num_detections  INT32  [1]      n <= K valid rows
            boxes           FP32   [K, 4]   xyxy, pixels of the original image (rows >= n are 0)
            scores          FP32   [K]      descending (rows >= n are 0)
            labels          INT32  [K]      the ids `ssdtrt detect` writes, 1..C-1 (rows >= n are 0)

Class names travel in the model config as the parameter `class_names` (a JSON list, name of label L at L-1).
Numpy only (no torch, no tritonclient): the server side, the python-backend models and the clients import it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import ImageReadError
from ssdtrt.io.images import decode_image

INPUT_NAME = "image"
OUTPUTS: tuple[tuple[str, str, str], ...] = (  # name, Triton data type, what the dims are
    ("num_detections", "TYPE_INT32", "[1]"),
    ("boxes", "TYPE_FP32", "[K, 4]"),
    ("scores", "TYPE_FP32", "[K]"),
    ("labels", "TYPE_INT32", "[K]"),
)
OUTPUT_NAMES: tuple[str, ...] = tuple(name for name, _, _ in OUTPUTS)
CLASS_NAMES_PARAMETER = "class_names"


def output_dims(max_detections: int) -> dict[str, list[int]]:
    """Dims (without the batch dim) of each output for K = max_detections."""
    k = int(max_detections)
    return {"num_detections": [1], "boxes": [k, 4], "scores": [k], "labels": [k]}


def image_bytes(row: np.ndarray | bytes, name: str) -> bytes:
    """The encoded image of one request row (a BYTES tensor row is an object array holding bytes)."""
    value = row if isinstance(row, (bytes, bytearray)) else np.asarray(row).reshape(-1)
    if not isinstance(value, (bytes, bytearray)):
        if value.size != 1:
            raise ImageReadError(f"{name}: expected one encoded image per row, got {value.size} elements")
        value = value[0]
    if isinstance(value, np.ndarray):  # a fixed-width numpy bytes scalar
        value = value.tobytes()
    if not isinstance(value, (bytes, bytearray, np.bytes_)):
        raise ImageReadError(f"{name}: expected encoded image bytes, got {type(value).__name__}")
    return bytes(value)


def decode_row(row: np.ndarray | bytes, name: str) -> np.ndarray:
    """One request row → HxWx3 uint8 RGB; ImageReadError naming the request when it is not a readable image."""
    return decode_image(image_bytes(row, name), name)


@dataclass
class DecodedBatch:
    """The rows of a batch split into decoded images (with their row index) and per-row error messages."""

    images_rgb: list[np.ndarray]
    rows: list[int]
    errors: dict[int, str]


def decode_rows(rows: Sequence[np.ndarray | bytes], names: Sequence[str]) -> DecodedBatch:
    """Decode every row; a bad row becomes an error message and never stops the others."""
    images, ok_rows, errors = [], [], {}
    for i, (row, name) in enumerate(zip(rows, names)):
        try:
            images.append(decode_row(row, name))
            ok_rows.append(i)
        except ImageReadError as err:
            errors[i] = str(err)
    return DecodedBatch(images, ok_rows, errors)


def pack_detections(dets: Sequence[Detections], max_detections: int) -> dict[str, np.ndarray]:
    """Detections per image → the contract's padded arrays with a leading batch dim (one row per image)."""
    k = int(max_detections)
    n_img = len(dets)
    out = {
        "num_detections": np.zeros((n_img, 1), np.int32),
        "boxes": np.zeros((n_img, k, 4), np.float32),
        "scores": np.zeros((n_img, k), np.float32),
        "labels": np.zeros((n_img, k), np.int32),
    }
    for i, d in enumerate(dets):  # per image (a handful per batch); the copy itself is vectorized
        d = d.numpy()
        n = min(len(d), k)
        out["num_detections"][i, 0] = n
        out["boxes"][i, :n] = np.asarray(d.boxes, np.float32)[:n]
        out["scores"][i, :n] = np.asarray(d.scores, np.float32)[:n]
        out["labels"][i, :n] = np.asarray(d.labels)[:n]
    return out


def unpack_detections(outputs: dict[str, np.ndarray], class_names: Sequence[str] | None = None) -> list[Detections]:
    """A response's padded arrays (leading batch dim) → Detections per row, un-padded (labels as int64)."""
    num = np.asarray(outputs["num_detections"]).reshape(-1)
    boxes, scores, labels = (np.asarray(outputs[k]) for k in ("boxes", "scores", "labels"))
    names = tuple(class_names) if class_names is not None else None
    return [
        Detections(boxes[i, : num[i]].astype(np.float32), scores[i, : num[i]].astype(np.float32),
                   labels[i, : num[i]].astype(np.int64), names)
        for i in range(num.shape[0])
    ]


def class_names_json(class_names: Sequence[str]) -> str:
    return json.dumps(list(class_names))


def class_names_from_json(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))
