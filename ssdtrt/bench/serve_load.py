"""`ssdtrt bench serve`: closed-loop load through Triton's own client (tritonclient) at a sweep of concurrencies.

Each level runs `concurrency` client threads (one tritonclient each), every thread sending one image per request
until the level's request count or its seconds run out (both bounded). Per level: throughput, p50/p90/p99 latency,
failed requests (an error answer) and lost ones (sent, never answered), and the batch sizes Triton executed (its
statistics, read before and after). The in-process baseline is `Detector.detect` on the same encoded images.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ssdtrt.serve import contract


@dataclass(frozen=True)
class LoadSettings:
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16)
    max_requests: int = 2000  # per level
    max_seconds: float = 20.0  # per level
    warmup_requests: int = 8  # per level, untimed
    protocol: str = "grpc"  # grpc | http
    model_name: str = "ssd"
    timeout_s: float = 60.0  # per request


@dataclass
class LevelResult:
    concurrency: int
    requests: int  # answered with detections
    failed: int
    lost: int
    seconds: float
    throughput_rps: float
    latency_ms: dict[str, float]
    batch_histogram: dict[int, int]  # batch size Triton executed -> executions during the level
    errors: list[str] = field(default_factory=list)  # first few distinct messages

    @property
    def mean_batch(self) -> float:
        total = sum(self.batch_histogram.values())
        return sum(b * n for b, n in self.batch_histogram.items()) / total if total else 0.0


def _client(url: str, protocol: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as client
    else:
        import tritonclient.http as client
    return client.InferenceServerClient(url)


def _request(protocol: str, data: bytes) -> list[Any]:
    if protocol == "grpc":
        import tritonclient.grpc as client
    else:
        import tritonclient.http as client
    inp = client.InferInput(contract.INPUT_NAME, [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[data]], dtype=object))
    return [inp]


def batch_counts(url: str, protocol: str, model_name: str) -> dict[int, int]:
    """Executions per batch size of the model that runs the network (`<name>_detector` in an ssdtrt ensemble)."""
    c = _client(url, protocol)
    try:
        stats = c.get_inference_statistics(model_name="", as_json=True) if protocol == "grpc" else c.get_inference_statistics()
    finally:
        c.close()
    models = {m["name"]: m for m in stats.get("model_stats", [])}
    chosen = models.get(f"{model_name}_detector") or models.get(model_name) or {}
    out: dict[int, int] = {}
    for b in chosen.get("batch_stats", []):
        out[int(b["batch_size"])] = int(b["compute_infer"].get("count", 0))
    return out


def settled_batch_counts(url: str, protocol: str, model_name: str, images_at_least: int,
                         timeout_s: float = 2.0) -> dict[int, int]:
    """`batch_counts` once the server has recorded at least `images_at_least` executed images (sum of batch size ×
    executions): Triton updates its statistics after it answers, so a read right after the last response can miss
    that execution and the next level would count it (measured: 17 executed images in a 16-request level)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        counts = batch_counts(url, protocol, model_name)
        if sum(b * n for b, n in counts.items()) >= images_at_least or time.perf_counter() > deadline:
            return counts
        time.sleep(0.02)


def run_level(url: str, images: Sequence[bytes], concurrency: int, s: LoadSettings) -> LevelResult:
    """One closed-loop level; every thread stops at the shared request budget or the deadline."""
    clients = [_client(url, s.protocol) for _ in range(concurrency)]
    start_images = sum(b * n for b, n in batch_counts(url, s.protocol, s.model_name).items())
    warmup = min(s.warmup_requests, len(images) * 4)
    for i in range(warmup):
        clients[i % concurrency].infer(s.model_name, _request(s.protocol, images[i % len(images)]))
    before = settled_batch_counts(url, s.protocol, s.model_name, start_images + warmup)
    lock = threading.Lock()
    budget = [s.max_requests]
    latencies: list[float] = []
    errors: list[str] = []
    sent = [0]
    answered = [0]

    def worker(k: int) -> None:
        c = clients[k]
        i = k
        while time.perf_counter() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
                sent[0] += 1
            inputs = _request(s.protocol, images[i % len(images)])
            i += concurrency
            t0 = time.perf_counter()
            try:
                result = c.infer(s.model_name, inputs, client_timeout=s.timeout_s) if s.protocol == "grpc" else c.infer(s.model_name, inputs, timeout=int(s.timeout_s * 1e6))
                num = result.as_numpy("num_detections")
                ok = num is not None and int(num.reshape(-1)[0]) >= 0
                msg = None if ok else _error_output(result)
            except Exception as err:  # noqa: BLE001 - every client error is a failed request, counted and kept
                ok, msg = False, f"{type(err).__name__}: {err}"
            dt = (time.perf_counter() - t0) * 1e3
            with lock:
                answered[0] += 1
                if ok:
                    latencies.append(dt)
                else:
                    errors.append(msg or "unknown")

    start = time.perf_counter()
    deadline = start + s.max_seconds
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=s.max_seconds + s.timeout_s + 10)
    seconds = time.perf_counter() - start
    after = settled_batch_counts(url, s.protocol, s.model_name, sum(b * n for b, n in before.items()) + answered[0])
    for c in clients:
        c.close()
    hist = {b: after.get(b, 0) - before.get(b, 0) for b in sorted(set(after) | set(before))}
    lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99]))
    return LevelResult(
        concurrency=concurrency, requests=len(latencies), failed=len(errors), lost=sent[0] - answered[0],
        seconds=round(seconds, 3), throughput_rps=len(latencies) / seconds if seconds > 0 else 0.0,
        latency_ms={"p50": p50, "p90": p90, "p99": p99, "mean": float(np.mean(lat)), "max": float(np.max(lat))},
        batch_histogram={b: n for b, n in hist.items() if n > 0}, errors=list(dict.fromkeys(errors))[:5],
    )


def _error_output(result: Any) -> str:
    err = result.as_numpy("error")
    if err is None:
        return "num_detections < 0"
    value = err.reshape(-1)[0]
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def in_process_baseline(model: str, images: Sequence[bytes], batch_sizes: Sequence[int], seconds: float,
                        thread_options: Sequence[dict[str, Any]] = ({},), *,
                        verify_hash: bool = True) -> list[dict[str, Any]]:
    """`Detector` throughput per runner-threads setting × batch size on the same encoded images: decode + detect
    (the work a request does) and detect alone (decoded beforehand). Each row runs about `seconds` per mode after
    one warm-up batch. Rows: {"threads", "batch", "decode+detect", "detect"} in images per second. `verify_hash`:
    check the model's sha256 against its manifest on each open (the size is always checked)."""
    from ssdtrt.io.images import decode_image
    from ssdtrt.inference.detector import Detector

    decoded = [decode_image(b) for b in images]
    rows: list[dict[str, Any]] = []
    for options in thread_options:
        for bs in batch_sizes:
            with Detector(model, batch_size=bs, verify_hash=verify_hash, **options) as det:
                row: dict[str, Any] = {"threads": next(iter(options.values()), "default"), "batch": bs}
                for mode in ("decode+detect", "detect"):
                    row[mode] = detector_rate(det, images, decoded, bs, seconds, decode=mode == "decode+detect")
                rows.append(row)
    return rows


def detector_rate(det: Any, images: Sequence[bytes], decoded: Sequence[np.ndarray], batch_size: int, seconds: float,
                  *, decode: bool) -> float:
    """Images per second of `det.detect` in batches of `batch_size` for about `seconds` (one warm-up batch first);
    `decode`: each batch starts from the encoded bytes, as a served request does."""
    from ssdtrt.io.images import decode_image

    det.detect([decoded[j % len(decoded)] for j in range(batch_size)])
    n = i = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        idx = [(i + j) % len(images) for j in range(batch_size)]
        det.detect([decode_image(images[j]) for j in idx] if decode else [decoded[j] for j in idx])
        n += batch_size
        i += batch_size
    return n / (time.perf_counter() - t0)


def level_dict(r: LevelResult) -> dict[str, Any]:
    d = asdict(r)
    d["mean_batch"] = r.mean_batch
    d["batch_histogram"] = {str(k): v for k, v in r.batch_histogram.items()}
    return d
