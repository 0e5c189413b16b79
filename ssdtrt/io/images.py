"""Reading user inputs for detection: image files, folders, globs and videos → HxWx3 uint8 RGB, torch-free.

Every failure is an `ImageReadError` naming the input and the reason, so a CLI can report one line per bad input
and carry on with the others. Decoding goes through `cv2.imdecode` on bytes read by Python (unicode paths work on
every OS) with `IMREAD_COLOR | IMREAD_ANYDEPTH`: OpenCV turns grayscale / palette into 3 channels, drops alpha and
applies the EXIF orientation; 16-bit images keep their depth and are scaled to 8 bits here (÷ 257).
"""

from __future__ import annotations

import glob
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ssdtrt.core.errors import ImageReadError
from ssdtrt.core.threads import background_iter

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"})
#: Images above this many pixels are refused (a 100 MP RGB image is 300 MB decoded; 8000x6000 = 48 MP is fine).
MAX_IMAGE_PIXELS = 100_000_000


@dataclass
class InputItem:
    """One decoded image (or the reason it could not be read) from the stream of `iter_inputs`.

    name: what the user calls it (the path; `video.mp4#frame=12` for a video frame). frame: index in a video or None.
    """

    name: str
    image_rgb: np.ndarray | None
    error: ImageReadError | None = None
    path: Path | None = None
    frame: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------------------------- single images


def read_image(path: str | os.PathLike[str], max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB; raises ImageReadError saying which file and why."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror or err})") from None
    return decode_image(data, str(path), max_pixels=max_pixels)


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (any format OpenCV reads) to HxWx3 uint8 RGB."""
    if len(data) == 0:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    size = peek_image_size(data)
    if size is not None:
        _check_pixels(name, *size, max_pixels=max_pixels)
    if data[:2] == b"\xff\xd8" and _jpeg_truncated(data):
        raise ImageReadError(f"{name}: corrupt JPEG (truncated: no end-of-image marker after the image data)")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        problem = _png_problem(data)
        if problem:
            raise ImageReadError(f"{name}: corrupt PNG ({problem})")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as err:
        raise ImageReadError(f"{name}: cannot decode ({_first_line(str(err))})") from None
    if image is None:
        kind = "corrupt or truncated image" if size is not None or data[:2] == b"\xff\xd8" else "not an image"
        raise ImageReadError(f"{name}: {kind} (OpenCV cannot decode {len(data)} bytes)")
    _check_pixels(name, image.shape[1], image.shape[0], max_pixels=max_pixels)
    return to_rgb8(image, name, bgr=True)


def to_rgb8(image: np.ndarray, name: str = "<array>", bgr: bool = False) -> np.ndarray:
    """Any OpenCV image (HxW, HxWx1/3/4; uint8, uint16 or float in [0, 1]) → contiguous HxWx3 uint8 RGB.

    `bgr`: the channels are in OpenCV's BGR(A) order. 16-bit is scaled by 1/257 (65535 → 255, rounded).
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageReadError(f"{name}: unsupported image shape {image.shape}")
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"{name}: unsupported pixel type {image.dtype}")
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    rgb = image[:, :, 2::-1] if bgr else image[:, :, :3]
    return np.ascontiguousarray(rgb)


def peek_image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP or GIF header without decoding; None for other formats or bad headers.

    Lets a 20 000 x 20 000 image be refused before it takes gigabytes of memory.
    """
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of the first start-of-frame segment (SOF0..SOF15 except DHT / JPG / DAC)."""
    return _jpeg_walk(data)[0]


def _jpeg_walk(data: bytes) -> tuple[tuple[int, int] | None, int]:
    """Walk the marker segments (skipping APPn payloads such as EXIF thumbnails) to the first start of scan.

    Returns (frame size or None, offset of the first SOS marker or -1).
    """
    i, n = 2, len(data)
    size: tuple[int, int] | None = None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return size, -1
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        if marker == 0xDA:
            return size, i
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if size is None and 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= n:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            size = (int(w), int(h))
        i += 2 + length
    return size, -1


def _jpeg_truncated(data: bytes) -> bool:
    """True when no end-of-image marker follows the image data (a cut-off download or copy).

    libjpeg would otherwise decode the missing part as grey and print a warning; we refuse the file instead.
    Entropy-coded data stuffs 0xFF as FF 00, so the first FF D9 after the first scan is the real end marker; data
    appended after it (motion photos append a video) does not matter.
    """
    sos = _jpeg_walk(data)[1]
    return sos < 0 or data.find(b"\xff\xd9", sos) < 0


def _png_problem(data: bytes) -> str | None:
    """Walk the PNG chunks checking lengths and CRCs (what libpng would complain about on stderr); None if sound."""
    i, n = 8, len(data)
    while i + 12 <= n:
        (length,) = struct.unpack(">I", data[i : i + 4])
        end = i + 12 + length
        if end > n:
            return "truncated"
        kind = data[i + 4 : i + 8]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[i + 4 : end - 4]) != crc:
            return f"CRC error in the {kind.decode('latin-1')} chunk"
        if kind == b"IEND":
            return None
        i = end
    return "truncated"


def _check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{name}: invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name}: image too large ({width}x{height} = {width * height / 1e6:.0f} MP; "
            f"the limit is {max_pixels / 1e6:.0f} MP)"
        )


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


# --------------------------------------------------------------------------------------------- videos


def iter_video_frames(path: str | os.PathLike[str], max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[np.ndarray]:
    """Frames of a video file as HxWx3 uint8 RGB; raises ImageReadError if it cannot be opened or has no frame."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ImageReadError(f"{path}: not a readable video (OpenCV cannot open it)")
        count = 0
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if count == 0:
                _check_pixels(str(path), frame.shape[1], frame.shape[0], max_pixels=max_pixels)
            count += 1
            yield to_rgb8(frame, f"{path}#frame={count - 1}", bgr=True)
        if count == 0:
            raise ImageReadError(f"{path}: not a readable video (no frame could be decoded)")
    finally:
        cap.release()


def video_frame_count(path: str | os.PathLike[str]) -> int:
    """The frame count the container declares (0 when unknown or unreadable): for progress bars only."""
    cap = cv2.VideoCapture(str(path))
    try:
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if cap.isOpened() else 0
    finally:
        cap.release()


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputSource:
    """One file to read (kind image | video), or an input that named nothing readable (kind missing)."""

    name: str
    path: Path
    kind: str  # image | video | missing
    reason: str = ""


def is_video(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[InputSource]:
    """Files, folders (their images and videos, sorted, not recursive), and glob patterns → sources in order.

    A path given explicitly is read whatever its extension (a `.png` that is text fails when read, naming itself);
    inside folders and globs only image / video extensions are taken. Duplicates are kept once.
    """
    out: list[InputSource] = []
    seen: set[Path] = set()

    def add(path: Path, name: str) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(InputSource(name, path, "video" if is_video(path) else "image"))

    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text)
        if path.is_dir():
            files = [p for p in sorted(path.iterdir()) if p.is_file() and _is_media(p)]
            if not files:
                out.append(InputSource(text, path, "missing", "folder has no image or video files"))
            for p in files:
                add(p, str(p))
        elif path.exists():
            add(path, text)
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            files = [p for p in matches if p.is_file() and _is_media(p)]
            if not files:
                out.append(InputSource(text, path, "missing", "pattern matches no image or video files"))
            for p in files:
                add(p, str(p))
        else:
            out.append(InputSource(text, path, "missing", "no such file or folder"))
    return out


def _is_media(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS


def iter_inputs(
    inputs: Sequence[str | os.PathLike[str]] | Sequence[InputSource], max_pixels: int = MAX_IMAGE_PIXELS
) -> Iterator[InputItem]:
    """Stream every image and video frame of INPUTS in order; a bad input yields one item carrying its error.

    Images are decoded lazily, one at a time, so a folder of thousands does not sit in memory. A video that fails
    part-way yields its good frames and then one error item.
    """
    sources = inputs if inputs and isinstance(inputs[0], InputSource) else expand_inputs(inputs)  # type: ignore[arg-type]
    for src in sources:
        assert isinstance(src, InputSource)
        yield from source_items(src, max_pixels)


def source_items(src: InputSource, max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[InputItem]:
    """One expanded input → its items (the stream reader shares this; it decodes image files on its pool instead)."""
    if src.kind == "missing":
        yield InputItem(src.name, None, ImageReadError(f"{src.name}: {src.reason}"), src.path)
    elif src.kind == "video":
        frame = -1
        try:
            for frame, image in enumerate(iter_video_frames(src.path, max_pixels=max_pixels)):
                yield InputItem(f"{src.name}#frame={frame}", image, None, src.path, frame)
        except ImageReadError as err:
            yield InputItem(src.name, None, err, src.path, frame + 1 if frame >= 0 else None)
    else:
        yield image_item(src, max_pixels)


def image_item(src: InputSource, max_pixels: int = MAX_IMAGE_PIXELS) -> InputItem:
    """An image file decoded, or an item carrying its ImageReadError (a bad file must not end the stream)."""
    try:
        return InputItem(src.name, read_image(src.path, max_pixels=max_pixels), None, src.path)
    except ImageReadError as err:
        return InputItem(src.name, None, err, src.path)


def prefetch(items: Iterable[InputItem], depth: int = 16) -> Iterator[InputItem]:
    """Read ahead in a background thread (decoding releases the GIL, so it overlaps inference); order is kept.

    An exception raised by `items` is re-raised here; leaving the loop early stops the reader.
    """
    if depth < 1:
        yield from items
        return
    yield from background_iter(items, depth, "ssdtrt-prefetch", join_timeout=5)
