"""Paths as benchmark records write them: relative to the repository, never the recording machine's absolute paths.

A record (JSON, markdown, text) is committed and re-run by others; `/work/main/runs/demo/x.onnx` names a folder
only the recording machine has, `runs/demo/x.onnx` names the file in every checkout. Rules, first match wins:
a file inside an installed package (`.../site-packages/numpy/lib/x.py`) → its module path (`numpy/lib/x.py`);
inside the repository that holds the working directory → relative to that repository's root; inside another git
checkout (a sibling worktree) → relative to that checkout's root; anywhere else → `<outside>/NAME`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

OUTSIDE = "<outside>"
_PACKAGE_DIRS = ("site-packages", "dist-packages")
# an absolute POSIX path token: "/" not preceded by a word character, "/", "." or "~" (not "img/s", "http://x/y",
# "./x"), then one or more path components
_ABSOLUTE_TOKEN = re.compile(r"(?<![\w/.~$-])/(?:[\w.+@%=-]+/)*[\w.+@%=-]+")


def repository_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest folder at or above `start` (default: the working directory) holding `.git`; else `start`."""
    here = Path(start if start is not None else os.getcwd()).absolute()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def _checkout_of(path: PurePosixPath) -> Path | None:
    for folder in path.parents:
        if str(folder) != "/" and (Path(folder) / ".git").exists():
            return Path(folder)
    return None


def portable_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """`path` as a record writes it (see the module rules); a relative path is returned unchanged.

    `root` is the repository the record belongs to (default: `repository_root()` of the working directory).
    """
    text = os.fspath(path)
    if not text.startswith("/"):
        return text
    pure = PurePosixPath(os.path.normpath(text))
    parts = pure.parts
    for marker in _PACKAGE_DIRS:
        if marker in parts:
            return str(PurePosixPath(*parts[parts.index(marker) + 1:])) if parts[-1] != marker else marker
    base = Path(root).absolute() if root is not None else repository_root()
    for anchor in (base, _checkout_of(pure)):
        if anchor is not None and pure.is_relative_to(anchor):
            rel = pure.relative_to(anchor)
            return str(rel) if str(rel) != "." else "."
    return f"{OUTSIDE}/{pure.name}"


def portable_text(text: str, root: str | os.PathLike[str] | None = None) -> str:
    """`text` with every absolute path token whose first folder exists here (`/work`, `/tmp`, `/usr`...) rewritten
    by `portable_path`; other slashes (`img/s`, URLs, `1/255`) are left alone."""
    base = Path(root).absolute() if root is not None else repository_root()

    def rewrite(match: re.Match[str]) -> str:
        token = match.group(0)
        first = PurePosixPath(token).parts[1]
        return portable_path(token, base) if Path("/", first).is_dir() else token

    return _ABSOLUTE_TOKEN.sub(rewrite, text)


def portable_record(obj: Any, root: str | os.PathLike[str] | None = None) -> Any:
    """A JSON-like record (dicts, lists, strings, paths, numbers) with `portable_text` applied to every string."""
    base = Path(root).absolute() if root is not None else repository_root()
    if isinstance(obj, os.PathLike):
        return portable_path(obj, base)
    if isinstance(obj, str):
        return portable_text(obj, base)
    if isinstance(obj, Mapping):
        return {key: portable_record(value, base) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable_record(value, base) for value in obj]
    return obj
