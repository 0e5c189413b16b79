"""Renderings of a latency report: table rows (terminal and markdown), a PNG plot, a JSON file.

Kept apart from the measuring and working on the JSON form (`LatencyReport.to_dict()`), so a saved JSON re-renders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ssdtrt.bench.latency import STAGES

COLUMNS = ("variant", "batch", "e2e p50", "p90", "p99", "mean", "min–max", "img/s", *STAGES, "pre+post %")
#: short headings for the terminal, where width is scarce
SHORT = {"preprocess": "pre", "inference": "infer", "postprocess": "post", "e2e p50": "p50", "pre+post %": "pre+post%"}


def _ms(value: float | None) -> str:
    return "—" if value is None else (f"{value:.2f}" if value < 100 else f"{value:.0f}")


def _columns(report: dict[str, Any]) -> list[str]:
    """COLUMNS without the host↔device copy columns when no result has them (CPU-only runs)."""
    present = {s for r in report["results"] for s in r["stages"]}
    return [c for c in COLUMNS if c not in ("h2d", "d2h") or c in present]


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per result (a report's `to_dict()` form): e2e stats, throughput, p50 of each stage, pre+post share."""
    columns = _columns(report)
    rows = []
    for r in report["results"]:
        st = r["stages"]
        e2e = st["e2e"]
        pre_post = st["preprocess"]["p50"] + st["postprocess"]["p50"]
        cells = {
            "variant": r["label"], "batch": str(r["batch_size"]), "e2e p50": _ms(e2e["p50"]), "p90": _ms(e2e["p90"]),
            "p99": _ms(e2e["p99"]), "mean": _ms(e2e["mean"]), "min–max": f"{_ms(e2e['min'])}–{_ms(e2e['max'])}",
            "img/s": f"{r['images_per_s']:.1f}", "pre+post %": f"{100 * pre_post / e2e['p50']:.1f}",
            **{s: _ms(st[s]["p50"]) if s in st else "—" for s in STAGES},
        }
        rows.append([cells[c] for c in columns])
    return rows


TERMINAL_DROP = ("p90", "mean")  # in the JSON and markdown; the terminal keeps p50, p99 and min–max


def rich_table(report: dict[str, Any]) -> Any:
    """A rich Table of `table_rows` (latencies in ms), with short headings and fewer columns."""
    from rich.table import Table

    columns = _columns(report)
    keep = [i for i, c in enumerate(columns) if c not in TERMINAL_DROP]
    table = Table(title="latency, ms (e2e = decoded images in → detections in pixels out; stages: p50)", title_justify="left")
    for col in (columns[i] for i in keep):
        if col == "variant":
            table.add_column(col, overflow="fold", min_width=22, ratio=1)
        else:
            table.add_column(SHORT.get(col, col), justify="right", no_wrap=True)
    for row in table_rows(report):
        table.add_row(*(row[i] for i in keep))
    return table


def markdown(report: dict[str, Any], command: str | None = None) -> str:
    """The report as markdown: settings, machine, the table, notes and skipped variants."""
    from ssdtrt.bench.markdown import md_table, report_head

    s = report["settings"]
    sizes = sorted({f"{h}×{w}" for h, w in report.get("image_sizes_hw", [])})
    lines = report_head("Latency", command, report["machine"])
    lines += [
        f"Settings: batch sizes {s['batch_sizes']}, {s['warmup']} warm-up + {s['iters']} timed iterations"
        + (f" (at most {s['max_seconds']:g} s per configuration, ≥ {s['min_iters']})" if s.get("max_seconds") else "")
        + f", threads {s['threads'] or 'backend default'}, images from `{s['data']}` val "
        f"({', '.join(sizes)} decoded RGB in, detections in pixels out).",
        "",
        *md_table(_columns(report), table_rows(report), numbers_right=True),
    ]
    lines += ["", "Latencies in ms; stage columns are p50 (host-to-device / device-to-host columns appear only "
              "when a GPU backend ran: CPU backends work in host memory throughout). img/s = batch / mean end-to-end latency. pre+post % = (preprocess + postprocess) "
              "p50 / end-to-end p50."]
    notes = sorted({f"{r['label']}: {n}" for r in report["results"] for n in r.get("notes", [])})
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    if report.get("skipped"):
        lines += ["", "Not run here:", ""] + [f"- {s['variant']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], out: str | os.PathLike[str], title: str = "ssdtrt bench latency") -> Path:
    """PNG: per batch size, horizontal stacked bars of stage p50s per variant, with the e2e p50–p99 range drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssdtrt.io.files import atomic_write_bytes

    results = report["results"]
    batch_sizes = sorted({r["batch_size"] for r in results})
    colors = {"preprocess": "#4c72b0", "h2d": "#8172b3", "inference": "#dd8452", "d2h": "#937860", "postprocess": "#55a868"}
    height = max(2.5, 0.45 * max((sum(r["batch_size"] == b for r in results) for b in batch_sizes), default=1) + 1.2)
    fig, axes = plt.subplots(len(batch_sizes), 1, figsize=(11, height * len(batch_sizes)), squeeze=False)
    for ax, bs in zip(axes[:, 0], batch_sizes):
        rows = sorted((r for r in results if r["batch_size"] == bs), key=lambda r: -r["stages"]["e2e"]["p50"])
        labels = [r["label"] for r in rows]
        left = [0.0] * len(rows)
        for stage in STAGES:
            widths = [r["stages"][stage]["p50"] if stage in r["stages"] else 0.0 for r in rows]
            if any(widths):
                ax.barh(labels, widths, left=left, color=colors[stage], label=stage)
                left = [a + b for a, b in zip(left, widths)]
        for y, r in enumerate(rows):
            e2e = r["stages"]["e2e"]
            ax.plot([e2e["p50"], e2e["p99"]], [y, y], color="black", lw=1)
            ax.text(e2e["p99"], y, f"  {e2e['p50']:.1f} ms", va="center", fontsize=8)
        top = max((r["stages"]["e2e"]["p99"] for r in rows), default=1.0)
        if rows and top > 20 * min(r["stages"]["e2e"]["p50"] for r in rows):
            ax.set_xscale("log")
            ax.set_xlim(right=top * 3)
        else:
            ax.set_xlim(0, top * 1.18)
        ax.set_title(f"batch {bs}: end-to-end p50 by stage (line: p50–p99)", fontsize=10)
        ax.set_xlabel("ms")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = Path(out)
    atomic_write_bytes(path, buf.getvalue())
    return path
