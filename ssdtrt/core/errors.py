"""Typed exceptions. Library code raises these; only the CLI turns them into one-line messages and exit codes."""

from __future__ import annotations


class SSDTRTError(Exception):
    """Base class: every error a user can cause. The CLI prints `str(err)` on one line and exits `exit_code`."""

    exit_code: int = 1


class UnknownPresetError(SSDTRTError, KeyError):
    """A preset name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown preset"


class CheckpointError(SSDTRTError):
    """A checkpoint that is missing, unreadable, corrupt or of an unknown format."""


class ClassCountMismatchError(SSDTRTError):
    """Weights, dataset or manifest disagree on the number of classes."""


class DatasetError(SSDTRTError):
    """A dataset spec that cannot be opened: missing files, malformed annotations."""


class ImageReadError(SSDTRTError):
    """An input image or video that cannot be decoded."""


class ExportError(SSDTRTError):
    """ONNX export, conversion or quantization failed."""


class ManifestError(SSDTRTError):
    """A model or engine whose manifest is missing, malformed or does not match the artifact."""


class EngineBuildError(SSDTRTError):
    """An engine builder (TensorRT, OpenVINO) rejected the model."""


class BackendUnavailableError(SSDTRTError):
    """An optional backend (tensorrt, cuda-python, openvino, CUDA) is not installed or has no device."""

    exit_code = 2


class IncompatibleEngineError(SSDTRTError):
    """An engine built for another TensorRT version or GPU."""


class ParityError(SSDTRTError):
    """Two models disagree beyond the tolerances."""


class ResultsFileError(SSDTRTError):
    """A Polygraphy RunResults / input file that cannot be read or does not fit the model compared with it."""
