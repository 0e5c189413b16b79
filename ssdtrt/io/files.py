"""Atomic writes and hashing. Every artifact is written to a temp file in the same folder, then renamed.

An artifact and its manifest are committed as a pair (`staging_dir` + `commit_pair`): both are written in full into a
hidden staging folder beside the destination, then the old manifest is removed, the artifact file(s) renamed into
place and the manifest renamed last. The manifest is the commit record (it carries the artifact's sha256 and size,
and every opener refuses an artifact without one), so a process killed at any instant leaves the previous pair, no
pair (an artifact without a manifest, which nothing opens), or the new pair; never a manifest beside a file it does
not describe. Staging folders of killed writers are swept by the next write to the same destination.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `dest`; on success rename it onto `dest`, on error delete it.

    Use for writers that insist on a file name (torch.save, onnx.save, cv2.imwrite): write to the yielded path.
    `suffix` keeps an extension some writers need (cv2 picks the codec from it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


STAGE_SUFFIX = ".stage"


@contextlib.contextmanager
def staging_dir(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh hidden folder beside `dest` (same file system, so renames out of it are atomic); always removed.

    Stale staging folders for the same `dest` left by killed processes (their pid is gone) are removed first.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_stages(dest)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=STAGE_SUFFIX, dir=dest.parent))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def commit_pair(artifacts: Sequence[tuple[Path, Path]], manifest: tuple[Path, Path]) -> None:
    """Move staged (src, dest) artifact files, then the staged manifest (src, dest), into place; see the module doc.

    Order: fsync every staged file; unlink the old manifest; rename the artifact files (an OpenVINO .bin before its
    .xml); rename the manifest; fsync the folder. Between the unlink and the last rename no manifest exists, so no
    opener pairs a new artifact with an old manifest or the reverse.
    """
    manifest_src, manifest_dest = manifest
    for src, _ in (*artifacts, manifest):
        _fsync_file(src)
    manifest_dest.unlink(missing_ok=True)
    for src, dest in artifacts:
        os.chmod(src, 0o644)
        os.replace(src, dest)
    os.chmod(manifest_src, 0o644)
    os.replace(manifest_src, manifest_dest)
    _fsync_dir(manifest_dest.parent)


def _sweep_stale_stages(dest: Path) -> None:
    for stage in dest.parent.glob(f".{dest.name}.*{STAGE_SUFFIX}"):
        parts = stage.name[len(dest.name) + 2:].split(".")
        if parts and parts[0].isdigit() and not _pid_alive(int(parts[0])):
            shutil.rmtree(stage, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
