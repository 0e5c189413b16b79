"""Annotated videos out of a stream: frames are encoded as they arrive (never held), the file appears atomically.

    with AnnotatedVideo(out / "clip.mp4", fps=source_fps(src)) as video:
        for frame_rgb in annotated_frames:
            video.write(frame_rgb)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from ssdtrt.core.errors import SSDTRTError

#: MPEG-4 Part 2 in an .mp4: encoded by every OpenCV build (no H.264 licence needed), plays everywhere.
VIDEO_SUFFIX = ".mp4"
FOURCC = "mp4v"
DEFAULT_FPS = 25.0


def source_fps(path: str | os.PathLike[str]) -> float:
    """Frames per second the video at `path` declares; DEFAULT_FPS when it declares none (or cannot be opened)."""
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if 0.0 < fps < 1000.0 else DEFAULT_FPS


class AnnotatedVideo:
    """An mp4v video written frame by frame to a temp file beside `dest`, renamed onto `dest` by `close()`.

    The frame size is taken from the first frame; later frames of another size are resized to it (a stream can change
    resolution mid-way). `discard()` (or an exception inside `with`) deletes the partial file.
    """

    def __init__(self, dest: str | os.PathLike[str], fps: float = DEFAULT_FPS) -> None:
        self.dest = Path(dest)
        self.fps = float(fps)
        self.frames = 0
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size_wh: tuple[int, int] = (0, 0)

    def write(self, frame_rgb: np.ndarray) -> None:
        if self._writer is None:
            self._open(frame_rgb.shape[1], frame_rgb.shape[0])
        if (frame_rgb.shape[1], frame_rgb.shape[0]) != self._size_wh:
            frame_rgb = cv2.resize(frame_rgb, self._size_wh, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame_rgb[:, :, ::-1]))  # type: ignore[union-attr]
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.dest.stem}.", suffix=".partial" + VIDEO_SUFFIX, dir=self.dest.parent)
        os.close(fd)
        self._tmp, self._size_wh = Path(tmp), (width, height)
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*FOURCC), self.fps, self._size_wh)
        if not writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise SSDTRTError(f"{self.dest}: OpenCV cannot open a {FOURCC} video writer ({width}x{height})")
        self._writer = writer

    def close(self) -> Path | None:
        """Finish the file and move it onto `dest`; None when no frame was written."""
        if self._writer is None or self._tmp is None:
            return None
        self._writer.release()
        self._writer = None
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.dest)
        self._tmp = None
        return self.dest

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> AnnotatedVideo:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
