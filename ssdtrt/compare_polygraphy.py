"""Polygraphy interop for `ssdtrt compare`: a Polygraphy RunResults JSON as either side, Polygraphy input files.

On a GPU machine a user runs `polygraphy run model.onnx --trt --save-inputs in.json --save-outputs out.json`;
`ssdtrt compare model.onnx out.json --load-inputs in.json` then checks that TensorRT run against the model with the
same tolerances and detection matching as any other comparison. `--save-inputs` writes ssdtrt's preprocessed
images as a Polygraphy input file for `polygraphy run --load-inputs`. Every file is read and written with
Polygraphy's own code (`RunResults.load`, `StreamingDataLoader`, its JSON encoder), never a copy of its format.

A RunResults side has outputs but no manifest: its preset, classes and postprocess settings are the other side's,
and its export mode follows from its output names (locs/logits, boxes/scores, or the nms outputs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.compare import Subject, detections_from_outputs
from ssdtrt.core.config import PostprocessSpec
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import BackendUnavailableError, ClassCountMismatchError, ResultsFileError
from ssdtrt.postprocess.settings import EXPORT_OUTPUTS

#: Export modes in the order their output names are tried (nms first: its outputs include "boxes" / "scores").
MODE_ORDER = ("nms", "raw", "decoded")


def is_results_file(path: str | os.PathLike[str]) -> bool:
    """A compare side given as JSON is a Polygraphy RunResults file (models are .onnx / .xml / .plan / .pt)."""
    return Path(path).suffix.lower() == ".json"


def _polygraphy() -> Any:
    try:
        import polygraphy.comparator as comparator
        import polygraphy.json as pjson
        from polygraphy.exception import PolygraphyException
    except ImportError as err:
        raise BackendUnavailableError("Polygraphy files need the polygraphy package: pip install polygraphy") from err
    return comparator, pjson, PolygraphyException


def _quiet() -> Any:
    """Polygraphy logs a critical message (with the whole decoded object) before raising: keep it off the console."""
    from polygraphy.logger import G_LOGGER

    return G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1)


def load_input_batches(path: str | os.PathLike[str], input_name: str) -> list[np.ndarray]:
    """The float32 NCHW batches of a Polygraphy input file (`polygraphy run --save-inputs`), one per iteration."""
    comparator, pjson, poly_error = _polygraphy()
    p = Path(path)
    if not p.exists():
        raise ResultsFileError(f"{p}: no such Polygraphy input file")
    streaming = getattr(comparator, "StreamingDataLoader", None)  # Polygraphy >= 0.53: files and per-iteration dirs
    try:
        with _quiet():
            feeds = list(streaming(str(p))) if streaming is not None else pjson.load_json(str(p))
        feeds = [feeds] if isinstance(feeds, dict) else feeds
    except (poly_error, ValueError, TypeError, OSError) as err:
        raise ResultsFileError(f"{p}: not a Polygraphy input file ({_first_line(err)})") from err
    batches = []
    for i, feed in enumerate(feeds):
        if not isinstance(feed, dict) or not feed:
            raise ResultsFileError(f"{p}: iteration {i} is not a feed dict of arrays (not a Polygraphy input file)")
        if input_name not in feed:
            raise ResultsFileError(f"{p}: iteration {i} has inputs {sorted(feed)}, the model needs {input_name!r}")
        x = np.asarray(feed[input_name])
        if x.ndim != 4:
            raise ResultsFileError(f"{p}: input {input_name!r} of iteration {i} has shape {x.shape}, expected NCHW")
        batches.append(x.astype(np.float32, copy=False))
    if not batches:
        raise ResultsFileError(f"{p}: no iterations in the Polygraphy input file")
    return batches


def save_input_batches(path: str | os.PathLike[str], input_name: str, batches: list[np.ndarray]) -> Path:
    """Write `batches` as a Polygraphy input file (a JSON list of feed dicts) for `polygraphy run --load-inputs`."""
    _, pjson, _ = _polygraphy()
    from ssdtrt.io.files import atomic_write_text

    return atomic_write_text(path, pjson.to_json([{input_name: np.ascontiguousarray(b)} for b in batches]))


class PolygraphySubject(Subject):
    """One runner's per-iteration outputs from a Polygraphy RunResults JSON, described by the other side (`like`).

    `run(batch)` returns the next iteration's outputs: the batches must be the inputs Polygraphy ran on, in order.
    """

    def __init__(self, path: str | os.PathLike[str], like: Subject, runner: str | None = None) -> None:
        comparator, _, poly_error = _polygraphy()
        p = Path(path)
        if not p.is_file():
            raise ResultsFileError(f"{p}: no such Polygraphy RunResults file")
        try:
            with _quiet():
                results = comparator.RunResults.load(str(p))
        except (poly_error, ValueError, TypeError, OSError) as err:
            raise ResultsFileError(f"{p}: not a Polygraphy RunResults JSON ({_first_line(err)})") from err
        names = list(results.keys())
        if not names:
            raise ResultsFileError(f"{p}: the RunResults hold no runner")
        if runner is None and len(names) > 1:
            raise ResultsFileError(f"{p}: the RunResults hold runners {names}: choose one with --runner")
        chosen = runner if runner is not None else names[0]
        if chosen not in names:
            raise ResultsFileError(f"{p}: no runner {chosen!r} in the RunResults (it has {names})")
        self.iterations = [dict(it.items()) for it in results[chosen]]
        if not self.iterations:
            raise ResultsFileError(f"{p}: runner {chosen!r} has no iterations")
        self.path = p
        self.name = f"polygraphy:{p.name}:{chosen}"
        self.spec, self.num_classes, self.postprocess = like.spec, like.num_classes, like.postprocess
        self.mode = _mode_of(p, self.iterations[0])
        self._next = 0

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        i = self._next
        if i >= len(self.iterations):
            raise ResultsFileError(f"{self.path}: {len(self.iterations)} iteration(s), but the inputs have more")
        self._next += 1
        out = {k: np.asarray(v) for k, v in self.iterations[i].items()}
        lead = {k: v.shape[0] for k, v in out.items() if v.ndim}
        if any(n != batch.shape[0] for n in lead.values()):
            raise ResultsFileError(f"{self.path}: iteration {i} has batch sizes {lead}, its input batch has "
                                   f"{batch.shape[0]} images: pass the inputs it ran on (--load-inputs)")
        c = out["logits" if self.mode == "raw" else "scores"].shape[-1] if self.mode != "nms" else self.num_classes
        if c != self.num_classes:
            raise ClassCountMismatchError(f"{self.path}: outputs have {c} classes, the model {self.num_classes}")
        return out

    def detections(self, outputs: dict[str, np.ndarray], settings: PostprocessSpec) -> list[Detections]:
        return detections_from_outputs(outputs, self.mode, self.spec, settings)

    def check_consumed(self) -> None:
        """Raise when the inputs covered fewer iterations than the RunResults hold (a mismatched input file)."""
        if self._next != len(self.iterations):
            raise ResultsFileError(f"{self.path}: {len(self.iterations)} iteration(s), the inputs only {self._next}: "
                                   "pass the inputs it ran on (--load-inputs)")


def _mode_of(path: Path, outputs: dict[str, Any]) -> str:
    for mode in MODE_ORDER:
        if all(n in outputs for n in EXPORT_OUTPUTS[mode]):
            return mode
    raise ResultsFileError(f"{path}: outputs {sorted(outputs)} are not an ssdtrt export's "
                           "(raw: locs, logits; decoded: boxes, scores; nms: num_detections, boxes, scores, labels)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
