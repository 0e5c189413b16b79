"""Tables, markdown and a PNG for `ssdtrt bench throughput` reports (the dict of `ThroughputReport.to_dict`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

HEADER = ["model", "batch", "requests", "pipeline img/s", "bare img/s", "ratio", "sequential img/s", "× sequential",
          "p50 ms", "p90 ms", "p99 ms"]


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "–" if value is None else format(value, fmt)


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        lat = r["latency_ms"]
        rows.append([
            r["label"], str(r["settings"]["batch_size"]), str(r["settings"]["requests"]),
            _num(r["images_per_second"]), _num(r["bare_images_per_second"]), _num(r["ratio"], ".2f"),
            _num(r["sequential_images_per_second"]), _num(r["speedup_vs_sequential"], ".2f"),
            _num(lat["p50"]), _num(lat["p90"]), _num(lat["p99"]),
        ])
    return rows


def rich_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="ssdtrt bench throughput")
    for i, name in enumerate(HEADER):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in table_rows(report):
        table.add_row(*row)
    return table


def markdown(report: dict[str, Any], command: str | None = None) -> str:
    from ssdtrt.bench.markdown import md_table, report_head

    s = report["settings"]
    lines = report_head("Throughput", command, report["machine"])
    lines += [
        f"Settings: {s['seconds']} s pipeline + {s['seconds']} s bare, alternated in {s.get('rounds', 1)} rounds, per model after "
        f"{s['warmup_seconds']} s warm-up; images from `{s['data']}` ({len(report['image_sizes_hw'])} decoded images "
        f"cycled{', resized to %dx%d' % tuple(s['image_size_hw']) if s.get('image_size_hw') else ''}); sequential = "
        f"`Detector.detect` in batches of {s['sequential_batch']} on a latency-mode runner.",
        "",
        *md_table(HEADER, table_rows(report), numbers_right=True),
    ]
    lines += [
        "",
        "pipeline = `Detector.stream` (decoded RGB image in → detections in pixels out, decode/pre/post beside "
        "inference); bare = the backend alone on random input with the same requests in flight (OpenVINO "
        "AsyncInferQueue, ONNX Runtime concurrent runs); ratio = median over the alternated bare → pipeline rounds of "
        "pipeline ÷ bare; latency = per image, in the pipeline.",
    ]
    for r in report["results"]:
        if r.get("rounds"):
            per = ", ".join(f"{x['ratio']:.2f}" for x in r["rounds"])
            lines.append(f"- {r['label']}: ratio per round {per}")
    if report.get("errors"):
        lines += ["", "Errors:", *[f"- {e}" for e in report["errors"]]]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """Grouped bars per model: pipeline, bare and sequential images/s (atomic PNG write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ssdtrt.io.files import atomic_path

    results = report["results"]
    labels = [r["label"] for r in results]
    series = [("pipeline", "images_per_second"), ("bare backend", "bare_images_per_second"),
              ("sequential detect", "sequential_images_per_second")]
    x = np.arange(len(results))
    fig, ax = plt.subplots(figsize=(max(6, 2.5 * len(results)), 4))
    for i, (name, key) in enumerate(series):
        values = [r[key] or 0.0 for r in results]
        ax.bar(x + (i - 1) * 0.27, values, 0.27, label=name)
    ax.set_xticks(x, labels, rotation=10, fontsize=8)
    ax.set_ylabel("images / s")
    ax.set_title("ssdtrt bench throughput")
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
