"""Write an engine file and its manifest as one unit: after any failure the destination holds the previous pair (or
nothing), never a new engine beside an old manifest or an engine without one.

Both files are first written to temp files beside the destination; the old pair is moved aside, the new pair moved
in (two renames on one file system), and the old pair is restored if either rename fails.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ssdtrt.fileio import atomic_write_json
from ssdtrt.manifest import Manifest, manifest_path_for


def _temp_beside(dest: Path, tag: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".{tag}.tmp", dir=dest.parent)
    os.close(fd)
    return Path(name)


def write_artifact_pair(dest: str | os.PathLike[str], data: bytes, manifest: Manifest) -> Path:
    """Write `data` to `dest` and `manifest` to its `<name>.json`, both or neither; returns the manifest path."""
    dest = Path(dest)
    manifest_dest = manifest_path_for(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        new_data, new_manifest = _temp_beside(dest, "new"), _temp_beside(dest, "new-json")
        temps += [new_data, new_manifest]
        new_data.write_bytes(data)
        atomic_write_json(new_manifest, manifest.to_dict())  # serialization errors surface before anything moves
        for path in (new_data, new_manifest):
            os.chmod(path, 0o644)
        backups: dict[Path, Path] = {}
        moved_in: list[Path] = []
        try:
            for current in (dest, manifest_dest):
                if current.exists():
                    backup = _temp_beside(dest, "old")
                    temps.append(backup)
                    os.replace(current, backup)
                    backups[current] = backup
            for new, current in ((new_data, dest), (new_manifest, manifest_dest)):
                os.replace(new, current)
                moved_in.append(current)
        except BaseException:
            for current in moved_in:
                current.unlink(missing_ok=True)
            for current, backup in backups.items():
                os.replace(backup, current)
            raise
    finally:
        for path in temps:
            path.unlink(missing_ok=True)
    return manifest_dest
