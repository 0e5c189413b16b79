"""What a benchmark ran on: CPU model and the instruction sets that decide int8/bf16 speed, GPU, library versions.

Recorded in every benchmark JSON so numbers from different machines are never compared blindly. Cheap: reads
/proc and package metadata, imports nothing heavy.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

#: CPU flags that change which kernels OpenVINO / ONNX Runtime / torch can use for int8 and bf16.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("numpy", "torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt",
            "cuda-python", "opencv-python-headless", "opencv-python")


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (empty off Linux)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None
    return None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that decide the numbers (absent ones left out)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def gpu_summary() -> list[dict[str, str]]:
    """NVIDIA GPUs from nvidia-smi (name, driver, memory); empty when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        text = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    keys = ("name", "driver", "memory", "compute_capability")
    return [dict(zip(keys, (v.strip() for v in line.split(",")))) for line in text.splitlines() if line.strip()]


def git_commit(repo: Path | None = None) -> str | None:
    """The ssdtrt source commit (short hash, '+dirty' when modified), when it runs from a git checkout."""
    root = repo or Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """Machine, CPU (model, cores, speed-relevant flags), memory, GPUs, Python and library versions."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "platform": platform.platform(),
        "cpu_model": cpu.get("model name") or platform.processor() or "unknown",
        "cpu_cores": usable,
        "cpu_flags": {flag: flag in flags for flag in SPEED_FLAGS} if flags else {},
        "memory_gib": _memory_gib(),
        "gpus": gpu_summary(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "ssdtrt_commit": git_commit(),
    }


def machine_line(info: dict[str, Any]) -> str:
    """The one-line description every benchmark report prints of `machine_info()`: CPU model, usable cores, speed
    flags, memory, GPUs, platform, Python, package versions and the ssdtrt commit (missing values as '?')."""
    get = lambda key: "?" if info.get(key) is None else info[key]  # noqa: E731
    flags = ", ".join(k for k, on in (info.get("cpu_flags") or {}).items() if on) or "n/a"
    gpus = ", ".join(g.get("name", "?") for g in info.get("gpus") or []) or "none"
    pkgs = ", ".join(f"{k} {v}" for k, v in (info.get("packages") or {}).items()) or "no package versions"
    return (f"Machine: {get('cpu_model')} ({get('cpu_cores')} usable cores; flags: {flags}), {get('memory_gib')} GiB, "
            f"GPU: {gpus}. {get('platform')}, Python {get('python')}; {pkgs}; ssdtrt {get('ssdtrt_commit')}.")


def cpu_caveats(info: dict[str, Any]) -> list[str]:
    """Plain-language notes on what this CPU cannot accelerate (so a slow bf16/int8 row is explained)."""
    flags = info.get("cpu_flags") or {}
    if not flags:
        return []
    notes = []
    if not (flags.get("avx512_bf16") or flags.get("amx_bf16")):
        notes.append("no bf16 instructions (AVX512-BF16/AMX): OpenVINO runs a bf16 hint as f32, torch bf16 is emulated")
    if not (flags.get("avx512_vnni") or flags.get("avx_vnni") or flags.get("amx_int8")):
        notes.append("no VNNI/AMX int8 dot products: int8 kernels gain little over f32")
    return notes


def cpu_lacks_int8_dot_products(info: dict[str, Any] | None = None) -> bool:
    """True on a CPU without VNNI / AMX int8 (AVX2 only): CPU int8 then wants 7-bit weights (`--reduce-range`)."""
    flags = (info or machine_info()).get("cpu_flags") or {}
    return bool(flags) and not (flags.get("avx512_vnni") or flags.get("avx_vnni") or flags.get("amx_int8"))
