"""Renderings of a `bench serve` report (its JSON form): terminal table, markdown, PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

COLUMNS = ("concurrency", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "answered", "failed", "lost", "mean batch",
           "batches (size×count)")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for lv in report["levels"]:
        lat = lv["latency_ms"]
        hist = " ".join(f"{b}×{n}" for b, n in sorted(lv["batch_histogram"].items(), key=lambda kv: int(kv[0])))
        rows.append([str(lv["concurrency"]), f"{lv['throughput_rps']:.1f}", f"{lat['p50']:.1f}", f"{lat['p90']:.1f}",
                     f"{lat['p99']:.1f}", f"{lat['max']:.1f}", str(lv["requests"]), str(lv["failed"]), str(lv["lost"]),
                     f"{lv['mean_batch']:.2f}", hist or "—"])
    return rows


def rich_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"served through tritonclient ({report['settings']['protocol']})", title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col.startswith("batches") else "right", overflow="fold")
    for row in table_rows(report):
        table.add_row(*row)
    return table


def markdown(report: dict[str, Any]) -> str:
    from ssdtrt.bench.markdown import md_table, report_head

    s = report["settings"]
    lines = report_head("Serving throughput (Triton, tritonclient load)", report.get("command"), report["machine"])
    lines += [
        f"Settings: model `{s.get('model') or s.get('repository') or s.get('url')}`, protocol {s['protocol']}, "
        f"{report['images']} JPEG images cycled, per level at most {s['max_requests']} requests / {s['max_seconds']} s, "
        f"server max batch {s['max_batch_size']}, queue delay {s['max_queue_delay_us']} µs, instances {s['instances']}, "
        f"runner threads {s.get('threads') or 'backend default'}. Target: {s['target']}.",
        "",
        *md_table(COLUMNS, table_rows(report)),
        "",
    ]
    if report.get("baseline"):
        lines += ["In-process `Detector` on the same images (img/s), measured in the same run before the server started:",
                  "", "| runner threads | batch | decode+detect | detect (decoded) |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['threads']} | {r['batch']} | {r['decode+detect']:.1f} | {r['detect']:.1f} |" for r in report["baseline"]]
        lines.append("")
    if report.get("interleaved"):
        lines += ["Interleaved windows (in-process and served alternate, so both see the same background load):", "",
                  "| round | in-process img/s | served req/s | ratio | served p99 ms | failed | lost |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {k + 1} | {r['in_process_img_s']:.1f} | {r['served_req_s']:.1f} | {r['ratio']:.2f} | "
                  f"{r['p99_ms']:.1f} | {r['failed']} | {r['lost']} |" for k, r in enumerate(report["interleaved"])]
        lines.append("")
    lines += [f"- {line}" for line in report["summary"]]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Throughput (left) and p50/p99 latency (right) per concurrency; the best in-process rate as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = report["levels"]
    conc = [lv["concurrency"] for lv in levels]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(conc, [lv["throughput_rps"] for lv in levels], "o-", label="served (req/s)")
    if report.get("baseline"):
        best = max(r["decode+detect"] for r in report["baseline"])
        ax1.axhline(best, color="gray", ls="--", label=f"in-process best ({best:.1f} img/s)")
        ax1.axhline(0.8 * best, color="gray", ls=":", label="0.8× in-process")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("concurrency")
    ax1.set_ylabel("images / s")
    ax1.legend(fontsize=8)
    ax2.plot(conc, [lv["latency_ms"]["p50"] for lv in levels], "o-", label="p50")
    ax2.plot(conc, [lv["latency_ms"]["p99"] for lv in levels], "s-", label="p99")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("concurrency")
    ax2.set_ylabel("latency, ms")
    ax2.legend(fontsize=8)
    fig.suptitle(f"ssdtrt serve: {Path(str(report['settings'].get('model') or report['settings'].get('repository') or 'server')).name}")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
