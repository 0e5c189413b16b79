"""Ordered, bounded, parallel reading of a stream's inputs: decoded images, image files and videos → InputItems.

Image files are decoded on a small thread pool (`cv2.imdecode` releases the GIL, so decoding runs beside inference);
a video's frames are decoded one after another on the feeder thread (a video decoder is sequential). At most `depth`
items are read ahead of the consumer, so memory is bounded by the depth whatever the input length: a 10-hour video
or a million-file folder is never held whole. Order is the input order; a bad input becomes one item carrying its
ImageReadError (a video that fails part-way: its good frames, then one error item).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Union

import numpy as np

from ssdtrt.core.errors import ImageReadError
from ssdtrt.io.images import MAX_IMAGE_PIXELS, InputItem, InputSource, image_item, is_video, source_items, to_rgb8
from ssdtrt.core.threads import background_iter

#: What a stream accepts per element: a decoded HxWx3 uint8 RGB image, a path to an image or video file, or an
#: `InputSource` from `ssdtrt.io.images.expand_inputs` (folders and globs already expanded).
StreamInput = Union[np.ndarray, str, "os.PathLike[str]", InputSource]


def read_ordered(
    inputs: Iterable[StreamInput], *, workers: int = 2, depth: int = 8, max_pixels: int = MAX_IMAGE_PIXELS
) -> Iterator[InputItem]:
    """Yield an InputItem per image / video frame of `inputs`, in order, reading at most `depth` items ahead.

    Leaving the loop early stops the feeder thread; an exception raised by iterating `inputs` itself is re-raised here.
    """
    if workers < 1 or depth < 1:
        raise ValueError(f"workers and depth must be >= 1, got {workers} and {depth}")
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ssdtrt-decode")
    # image files come as decode Futures, resolved here in input order, so `depth` also bounds the decodes in flight
    ahead = background_iter(_pending(inputs, pool, max_pixels), depth, "ssdtrt-stream-feed", join_timeout=10)
    try:
        for value in ahead:
            yield value.result() if isinstance(value, Future) else value
    finally:
        ahead.close()  # stops and joins the feeder before the pool goes: it must not submit to a shut-down pool
        pool.shutdown(wait=True, cancel_futures=True)


def _pending(
    inputs: Iterable[StreamInput], pool: ThreadPoolExecutor, max_pixels: int
) -> Iterator[InputItem | Future[InputItem]]:
    """Every input's items in input order (run on the feeder thread)."""
    for index, element in enumerate(inputs):
        yield from _expand(element, index, pool, max_pixels)


def _expand(element: StreamInput, index: int, pool: ThreadPoolExecutor, max_pixels: int) -> Iterator[InputItem | Future[InputItem]]:
    """One input element → its items: a decoded array at once, an image file as a decode Future, a video frame by frame."""
    if isinstance(element, np.ndarray):
        name = f"<image {index}>"
        try:
            yield InputItem(name, to_rgb8(element, name))
        except ImageReadError as err:
            yield InputItem(name, None, err)
        return
    src = element if isinstance(element, InputSource) else _source(element)
    if src.kind == "image":
        yield pool.submit(image_item, src, max_pixels)
    else:
        yield from source_items(src, max_pixels)  # missing: its error item; video: frame by frame, on this thread


def _source(element: str | os.PathLike[str]) -> InputSource:
    path = Path(element)
    return InputSource(os.fspath(element), path, "video" if is_video(path) else "image")
