"""File I/O: image decoding (with pixel limits), video read/write, result writers, atomic files + hashing, COCO JSON,
drawing."""
