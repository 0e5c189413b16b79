"""One command for the first GPU: everything in ssdtrt that needs CUDA or TensorRT, run and recorded in one report.

    make gpu-check                       # = python benchmarks/gpu/gpu_check.py --out benchmarks/gpu
    python benchmarks/gpu/gpu_check.py --checkpoint runs/demo/train/best.pt --budget-s 480

Needs no internet: a random-weight ssd-small checkpoint is made when none is given, images and calibration data are
synthetic. Steps (each skipped, with the reason, when what it needs is missing, or when the time budget is spent):
  pytest-gpu             every `cuda` / `tensorrt` test
  postprocess-gpu        torch-CUDA postprocess vs torchvision on the GPU (parity checked first, then timed)
  cuda-python-roundtrip  pinned (cudaMallocHost) vs pageable host<->device round trip, bit-exact, timed
  torch-cuda-detect      `ssdtrt detect --device cuda`
  torch-cuda-latency     `ssdtrt bench latency --backend torch --device cuda`
  tensorrt-export        raw fp32 / fp16 / int8 (Q/DQ) ONNX exports, dynamic batch
  tensorrt-build         an engine per export (DETAILED profiling verbosity, for the inspector)
  tensorrt-parity        each engine vs ONNX Runtime on the same ONNX
  tensorrt-streaming     sequential infer vs infer_async with optimal_in_flight() pending (fp16 engine, batch 8)
  tensorrt-latency       `ssdtrt bench latency` of the engines
  int8-layer-precisions  IEngineInspector: the precision each layer of the INT8 engine runs in
Writes gpu-check.json and gpu-check.md under --out; exit 1 if a step failed (skips are not failures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PRECISIONS = ("fp32", "fp16", "int8")
# |TensorRT - ONNX Runtime| / max|ONNX Runtime| per precision (same ONNX on both; TF32, FP16 and INT8 kernels differ)
PARITY_REL_TOL = {"fp32": 1e-2, "fp16": 3e-2, "int8": 1.5e-1}


class Skip(Exception):
    """A step that cannot run here; the message is the reason written into the report."""


@dataclass
class Step:
    name: str
    status: str = "skipped"  # passed | failed | skipped
    reason: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _sh(args: list[str], *, timeout_s: float, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=max(1.0, timeout_s))


def _ssdtrt(*args: str) -> list[str]:
    return [sys.executable, "-m", "ssdtrt.cli.app", *args]


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# -- what is available -------------------------------------------------------------------------------------------------
def torch_cuda_missing() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    return None


def cuda_python_missing() -> str | None:
    from ssdtrt.core.errors import SSDTRTError
    from ssdtrt.runtime.cuda_buffers import cuda_call, import_cudart

    try:
        cudart = import_cudart()
        count = cuda_call(cudart, cudart.cudaGetDeviceCount())
    except SSDTRTError as err:
        return str(err)
    return None if count else "cuda-python sees 0 GPUs"


def tensorrt_missing() -> str | None:
    from ssdtrt.core.errors import SSDTRTError
    from ssdtrt.runtime.tensorrt_runner import import_tensorrt

    try:
        import_tensorrt()
    except SSDTRTError as err:
        return str(err)
    return cuda_python_missing() and torch_cuda_missing()  # the runner needs CUDA through one of them


class GpuCheck:
    def __init__(self, out: Path, work: Path, budget_s: float, checkpoint: Path | None) -> None:
        self.out, self.work, self.budget_s = out, work, budget_s
        self.checkpoint_arg = checkpoint
        self.start = time.perf_counter()
        self.steps: list[Step] = []
        self.state: dict[str, Any] = {}
        self.missing = {"torch-cuda": torch_cuda_missing(), "cuda-python": cuda_python_missing(),
                        "tensorrt": tensorrt_missing()}

    def left_s(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def run(self, name: str, fn: Callable[[], dict[str, Any]], needs: tuple[str, ...] = (), after: tuple[str, ...] = (),
            needs_any: tuple[str, ...] = ()) -> None:
        step = Step(name)
        self.steps.append(step)
        reasons = [f"{n}: {self.missing[n]}" for n in needs if self.missing.get(n)]
        if needs_any and all(self.missing.get(n) for n in needs_any):
            reasons.append("no CUDA GPU usable here (" + "; ".join(f"{n}: {self.missing[n]}" for n in needs_any) + ")")
        reasons += [f"step {a} did not pass" for a in after if not any(s.name == a and s.status == "passed" for s in self.steps)]
        if reasons:
            step.reason = "; ".join(reasons)
            print(f"[skip] {name}: {step.reason}", flush=True)
            return
        if self.left_s() < 10:
            step.reason = f"time budget of {self.budget_s:.0f} s spent"
            print(f"[skip] {name}: {step.reason}", flush=True)
            return
        t0 = time.perf_counter()
        print(f"[run ] {name} ...", flush=True)
        try:
            step.details = fn() or {}
            step.status = "passed"
        except Skip as why:
            step.reason = str(why)
        except Exception as err:  # noqa: BLE001  (one failed step must not hide the others)
            step.status, step.reason = "failed", _first_line(err)
            step.details["traceback"] = _tail(traceback.format_exc(), 8)
        step.seconds = round(time.perf_counter() - t0, 2)
        print(f"[{step.status[:4]}] {name} ({step.seconds:.1f} s) {step.reason}", flush=True)

    # -- inputs ------------------------------------------------------------------------------------------------------
    def checkpoint(self) -> Path:
        if self.checkpoint_arg is not None:
            return self.checkpoint_arg
        path = self.work / "ssd-small-random.pt"
        if not path.is_file():
            import torch

            from ssdtrt.model.checkpoint import save_checkpoint
            from ssdtrt.model.ssd import build_model

            torch.manual_seed(0)
            save_checkpoint(path, build_model("ssd-small").eval())
        return path

    def images(self) -> Path:
        folder = self.work / "images"
        if not folder.is_dir():
            import cv2

            folder.mkdir(parents=True)
            rng = np.random.default_rng(0)
            for i in range(4):
                cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
        return folder

    # -- steps -------------------------------------------------------------------------------------------------------
    def pytest_gpu(self) -> dict[str, Any]:
        args = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "cuda or tensorrt", "tests"]
        res = _sh(args, timeout_s=min(300, self.left_s() - 5))
        summary = (res.stdout.strip().splitlines() or [""])[-1]
        details = {"command": shlex.join(args[2:]), "summary": summary,
                   "skips": [ln for ln in res.stdout.splitlines() if ln.startswith("SKIPPED")]}
        if res.returncode not in (0, 5):
            raise RuntimeError(f"pytest exit {res.returncode}: {summary}\n{_tail(res.stdout)}")
        return details

    def postprocess_gpu(self) -> dict[str, Any]:
        out = self.work / "postprocess.json"
        args = _ssdtrt("bench", "postprocess", "--cases", "stress,random", "--batch-sizes", "1,8", "--iters", "20",
                       "--max-seconds", "5", "--json", str(out))
        res = _sh(args, timeout_s=min(180, self.left_s() - 5))
        if res.returncode != 0:  # a parity mismatch is exit 1 with the mismatch on one line
            raise RuntimeError(f"bench postprocess exit {res.returncode}: {_tail(res.stderr or res.stdout, 3)}")
        rows = [r for r in json.loads(out.read_text())["results"] if "cuda" in r["impl"]]
        if not rows:
            raise RuntimeError("bench postprocess measured no CUDA implementation")
        keep = ("case", "batch", "impl", "p50_ms", "detections_per_image", "reference", "ratio_vs_torchvision")
        return {"command": "ssdtrt " + shlex.join(args[3:]), "parity": "checked equal to torchvision before timing",
                "rows": [{k: r.get(k) for k in keep} for r in rows]}

    def cuda_python_roundtrip(self) -> dict[str, Any]:
        from ssdtrt.runtime.cuda_buffers import round_trip_timed

        host = np.random.default_rng(0).standard_normal((8, 3, 300, 300)).astype(np.float32)
        rows = {}
        for pinned in (True, False):
            back, ms = round_trip_timed(host, pinned=pinned, repeats=20)
            if not np.array_equal(back, host):
                raise RuntimeError(f"{'pinned' if pinned else 'pageable'} round trip is not bit-exact")
            rows["pinned" if pinned else "pageable"] = {"median_ms": round(ms, 3),
                                                        "GB_per_s": round(2 * host.nbytes / ms / 1e6, 2)}
        return {"bytes": host.nbytes, "bit_exact": True, **rows}

    def torch_cuda_detect(self) -> dict[str, Any]:
        out = self.work / "detect"
        args = _ssdtrt("detect", str(self.checkpoint()), str(self.images()), "--out", str(out), "--device", "cuda",
                       "--batch-size", "2")
        res = _sh(args, timeout_s=min(120, self.left_s() - 5))
        if res.returncode != 0:
            raise RuntimeError(f"detect exit {res.returncode}: {_tail(res.stderr, 3)}")
        return {"command": "ssdtrt " + shlex.join(args[3:]), "files": sorted(p.name for p in out.iterdir())[:10]}

    def _bench_latency(self, models: list[Path], extra: list[str], name: str, *, batch_sizes: str = "1,8",
                       iters: int = 50) -> dict[str, Any]:
        out = self.work / f"{name}.json"
        args = _ssdtrt("bench", "latency", *map(str, models), *extra, "--batch-sizes", batch_sizes, "--warmup", "5",
                       "--iters", str(iters), "--max-seconds", "5", "--min-iters", str(min(10, iters)), "--json", str(out))
        res = _sh(args, timeout_s=min(240, self.left_s() - 5))
        if res.returncode != 0 or not out.is_file():
            raise RuntimeError(f"bench latency exit {res.returncode}: {_tail(res.stderr, 3)}")
        data = json.loads(out.read_text())
        rows = [{"label": r["label"], "batch": r["batch_size"], "images_per_s": round(r["images_per_s"], 1),
                 **{f"{s}_p50_ms": round(v["p50"], 3) for s, v in r["stages"].items()}} for r in data["results"]]
        return {"command": "ssdtrt " + shlex.join(args[3:]), "rows": rows}

    def torch_cuda_latency(self) -> dict[str, Any]:
        return self._bench_latency([self.checkpoint()], ["--backend", "torch", "--device", "cuda"], "latency-torch-cuda")

    def tensorrt_export(self) -> dict[str, Any]:
        onnx = {}
        for precision in PRECISIONS:
            path = self.work / f"ssd-small-raw-{precision}.onnx"
            args = _ssdtrt("export", str(self.checkpoint()), "--mode", "raw", "--dynamic-batch", "--precision",
                           precision, "--calib-data", "synthetic", "--calib-images", "64", "--out", str(path))
            res = _sh(args, timeout_s=min(240, self.left_s() - 5))
            if res.returncode != 0:
                raise RuntimeError(f"export {precision} exit {res.returncode}: {_tail(res.stderr, 3)}")
            onnx[precision] = path
        self.state["onnx"] = onnx
        return {"onnx": {k: v.name for k, v in onnx.items()}}

    def tensorrt_build(self) -> dict[str, Any]:
        from ssdtrt.engines.tensorrt_builder import build_tensorrt

        plans, rows = {}, {}
        for precision, onnx in self.state["onnx"].items():
            result = build_tensorrt(onnx, self.work / f"ssd-small-{precision}", max_batch=8, detailed_profile=True,
                                    timing_cache=self.work / "timing.cache")
            plans[precision] = result.engine_path
            eng = result.manifest.engine
            rows[precision] = {k: eng[k] for k in ("tensorrt_version", "gpu_name", "compute_capability",
                                                   "build_seconds", "plan_bytes", "timing_cache_status")}
        self.state["plans"] = plans
        return rows

    def tensorrt_parity(self) -> dict[str, Any]:
        from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner
        from ssdtrt.runtime.tensorrt_runner import TensorRTRunner

        rows, bad = {}, []
        for precision, plan in self.state["plans"].items():
            onnx = self.state["onnx"][precision]
            size = read_input_hw(onnx)
            x = np.random.default_rng(0).standard_normal((4, 3, *size)).astype(np.float32)
            with TensorRTRunner(plan) as trt_runner, OnnxRuntimeRunner(onnx, providers=["CPUExecutionProvider"]) as ref:
                got, want = trt_runner.infer({"images": x}), ref.infer({"images": x})
            row = {}
            for name in want:
                diff = float(np.max(np.abs(got[name].astype(np.float64) - want[name])))
                rel = diff / max(float(np.max(np.abs(want[name]))), 1e-12)
                row[name] = {"max_abs": round(diff, 6), "rel": round(rel, 6), "tol_rel": PARITY_REL_TOL[precision]}
                if rel > PARITY_REL_TOL[precision]:
                    bad.append(f"{precision} {name} rel {rel:.3g} > {PARITY_REL_TOL[precision]}")
            rows[precision] = row
        if bad:
            raise RuntimeError("TensorRT vs ONNX Runtime beyond tolerance: " + "; ".join(bad))
        return rows

    def tensorrt_streaming(self) -> dict[str, Any]:
        """Sequential `infer` vs `infer_async` with optimal_in_flight() requests pending (one context, stream and pinned
        buffers per slot): images/s over ~2 s each, and the async outputs match the sequential ones."""
        from collections import deque

        from ssdtrt.runtime.tensorrt_runner import TensorRTRunner

        plan = self.state["plans"]["fp16"]
        x = np.random.default_rng(0).standard_normal((8, 3, *read_input_hw(self.state["onnx"]["fp16"]))).astype(np.float32)
        feeds = {"images": x}
        with TensorRTRunner(plan) as runner:
            want = runner.infer(feeds)
            got = runner.infer_async(feeds).result(timeout=60)
            for name in want:  # same engine and input: equal up to nondeterministic reductions (split-K atomics)
                scale = max(float(np.max(np.abs(want[name]))), 1e-12)
                if float(np.max(np.abs(got[name].astype(np.float64) - want[name]))) > 1e-3 * scale:
                    raise RuntimeError(f"infer_async output {name!r} differs from infer")
            rows = {}
            for mode in ("sequential", "async"):
                done, t0 = 0, time.perf_counter()
                pending: deque[Any] = deque()
                while time.perf_counter() - t0 < 2.0:
                    if mode == "sequential":
                        runner.infer(feeds)
                        done += 1
                        continue
                    while len(pending) < runner.optimal_in_flight():
                        pending.append(runner.infer_async(feeds))
                    pending.popleft().result(timeout=60)
                    done += 1
                while pending:
                    pending.popleft().result(timeout=60)
                    done += 1
                rows[mode] = {"images_per_s": round(done * len(x) / (time.perf_counter() - t0), 1)}
            rows["in_flight"] = runner.optimal_in_flight()
        return {"batch": len(x), "plan": plan.name, **rows}

    def tensorrt_latency(self) -> dict[str, Any]:
        return self._bench_latency(list(self.state["plans"].values()), [], "latency-tensorrt")

    def int8_layer_precisions(self) -> dict[str, Any]:
        from ssdtrt.engines.tensorrt_inspect import inspect_engine, precision_summary

        layers = inspect_engine(self.state["plans"]["int8"])
        return {"summary": precision_summary(layers),
                "layers": [{"name": layer.name, "type": layer.layer_type, "in": list(layer.input_precisions),
                            "out": list(layer.output_precisions)} for layer in layers]}

    def run_all(self) -> None:
        self.run("pytest-gpu", self.pytest_gpu, needs_any=("torch-cuda", "cuda-python", "tensorrt"))
        self.run("postprocess-gpu", self.postprocess_gpu, needs=("torch-cuda",))
        self.run("cuda-python-roundtrip", self.cuda_python_roundtrip, needs=("cuda-python",))
        self.run("torch-cuda-detect", self.torch_cuda_detect, needs=("torch-cuda",))
        self.run("torch-cuda-latency", self.torch_cuda_latency, needs=("torch-cuda",))
        self.run("tensorrt-export", self.tensorrt_export, needs=("tensorrt",))
        self.run("tensorrt-build", self.tensorrt_build, needs=("tensorrt",), after=("tensorrt-export",))
        self.run("tensorrt-parity", self.tensorrt_parity, needs=("tensorrt",), after=("tensorrt-build",))
        self.run("tensorrt-streaming", self.tensorrt_streaming, needs=("tensorrt",), after=("tensorrt-build",))
        self.run("tensorrt-latency", self.tensorrt_latency, needs=("tensorrt",), after=("tensorrt-build",))
        self.run("int8-layer-precisions", self.int8_layer_precisions, needs=("tensorrt",), after=("tensorrt-build",))


def read_input_hw(onnx_path: Path) -> tuple[int, int]:
    from ssdtrt.core.manifest import read_manifest

    shape = read_manifest(onnx_path).inputs[0].shape
    return int(shape[2]), int(shape[3])


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    if shutil.which("lscpu"):
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Model name")), "?")
        flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("Flags")), [])
        info["cpu_flags_of_note"] = [f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma"))]
    if shutil.which("nvidia-smi"):
        res = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True)
        info["gpus"] = res.stdout.strip().splitlines() or res.stderr.strip()
    else:
        info["gpus"] = "nvidia-smi not found"
    from importlib import metadata

    for dist in ("torch", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "cuda-bindings", "cuda-python", "onnxruntime",
                 "onnxruntime-gpu"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return info


def markdown(report: dict[str, Any]) -> str:
    lines = ["# GPU check", "", f"Command: `{report['command']}`  ", f"Finished: {report['finished_utc']} UTC, "
             f"{report['total_seconds']} s of a {report['budget_s']} s budget", "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in report["machine"].items()]
    lines += ["", "## Steps", "", "| step | status | seconds | reason |", "|---|---|---|---|"]
    for s in report["steps"]:
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']} | {s['reason'].replace('|', '/')} |")
    for s in report["steps"]:
        details = {k: v for k, v in s["details"].items() if k != "layers"}
        if details:
            lines += ["", f"### {s['name']}", "", "```json", json.dumps(details, indent=1, default=str), "```"]
        if s["details"].get("layers"):
            lines += ["", "| layer | type | input precisions | output precisions |", "|---|---|---|---|"]
            lines += [f"| {la['name'][:80]} | {la['type']} | {', '.join(la['in'])} | {', '.join(la['out'])} |"
                      for la in s["details"]["layers"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu", help="folder of gpu-check.json/.md")
    parser.add_argument("--checkpoint", type=Path, default=None, help="ssdtrt checkpoint (default: random ssd-small)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip the remaining steps after this long")
    parser.add_argument("--keep-work", type=Path, default=None, help="keep exports/engines in this folder")
    args = parser.parse_args(argv)
    work_ctx = tempfile.TemporaryDirectory(prefix="ssdtrt-gpu-check-") if args.keep_work is None else None
    work = Path(work_ctx.name) if work_ctx else args.keep_work
    work.mkdir(parents=True, exist_ok=True)
    try:
        check = GpuCheck(args.out, work, args.budget_s, args.checkpoint)
        check.run_all()
    finally:
        if work_ctx:
            work_ctx.cleanup()
    report = {
        "command": shlex.join(["python", "benchmarks/gpu/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "total_seconds": round(time.perf_counter() - check.start, 1), "budget_s": args.budget_s,
        "machine": machine(), "available": {k: v or "yes" for k, v in check.missing.items()},
        "steps": [asdict(s) for s in check.steps],
    }
    from ssdtrt.bench.record_paths import portable_record

    report = portable_record(report, ROOT)  # records hold paths relative to the repository
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (args.out / "gpu-check.md").write_text(markdown(report))
    counts = {k: sum(s.status == k for s in check.steps) for k in ("passed", "failed", "skipped")}
    print(f"gpu-check: {counts} -> {args.out / 'gpu-check.md'}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
