"""What `ssdtrt detect` writes per result: annotated images, annotated videos, COCO records (both detect paths).

Results must arrive in input order (the stream and the sequential path both give them so): a video's frames are
consecutive, so one video writer is open at a time and is finished when the next input starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import SSDTRTError
from ssdtrt.io.video_out import VIDEO_SUFFIX, AnnotatedVideo, source_fps


@dataclass
class DetectOutputs:
    """Sink of one detect run. write_images: annotated copies (images; videos as .mp4); write_frames: also every
    annotated video frame as `<stem>_<frame>.jpg`. `report` gets one line per problem; `failures` counts them."""

    out: Path
    write_images: bool = True
    write_frames: bool = False
    report: Callable[[str], Any] = print
    records: list[dict[str, Any]] = field(default_factory=list)
    images: int = 0
    failures: int = 0
    videos: list[Path] = field(default_factory=list)
    _used_names: set[str] = field(default_factory=set)
    _video: AnnotatedVideo | None = None
    _video_source: Path | None = None

    def fail(self, message: str) -> None:
        self.failures += 1
        self.report(f"error: {message}")

    def error(self, err: Exception, path: Path | None = None) -> None:
        """An input that could not be read (a video that broke part-way keeps the frames before the break)."""
        if path is not None and path == self._video_source:
            self._finish_video()
        self.fail(str(err))

    def add(self, name: str, image_rgb: np.ndarray, dets: Detections, path: Path | None, frame: int | None) -> None:
        from ssdtrt.io.cocojson import coco_records

        if frame is None or path != self._video_source:
            self._finish_video()
        self.images += 1
        if self.write_images and path is not None:
            try:
                self._write(image_rgb, dets, path, frame)
            except (OSError, SSDTRTError) as err:  # one bad write must not stop the run
                self.fail(f"{name}: cannot write the annotated {'frame' if frame is not None else 'image'} ({err})")
        self.records.extend(coco_records(dets, image_id=self.images, file_name=name))

    def close(self) -> None:
        self._finish_video()

    # ------------------------------------------------------------------------------------------ internals
    def _write(self, image_rgb: np.ndarray, dets: Detections, path: Path, frame: int | None) -> None:
        from ssdtrt.io.draw import annotated_suffix, draw_detections, write_image

        drawn = draw_detections(image_rgb, dets)
        if frame is None:
            write_image(self.out / self._unique(path.stem, annotated_suffix(path.suffix)), drawn)
            return
        if self._video_source != path:
            self._video_source = path
            self._video = AnnotatedVideo(self.out / self._unique(path.stem, VIDEO_SUFFIX), fps=source_fps(path))
        if self.write_frames:
            write_image(self.out / self._unique(f"{path.stem}_{frame:06d}", ".jpg"), drawn)
        assert self._video is not None
        self._video.write(drawn)

    def _finish_video(self) -> None:
        video, self._video, self._video_source = self._video, None, None
        if video is None:
            return
        try:
            written = video.close()
        except (OSError, SSDTRTError, ValueError) as err:
            video.discard()
            self.fail(f"{video.dest}: cannot write the annotated video ({err})")
            return
        if written is not None:
            self.videos.append(written)

    def _unique(self, stem: str, suffix: str) -> str:
        """`stem+suffix`, or `stem_2+suffix`… when another input of this run already took the name."""
        name, n = f"{stem}{suffix}", 1
        while name.lower() in self._used_names:
            n += 1
            name = f"{stem}_{n}{suffix}"
        self._used_names.add(name.lower())
        return name
