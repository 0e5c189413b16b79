"""Views of a postprocess benchmark report (the JSON dict of `PostprocessBenchReport.to_dict`): rich table,
markdown, PNG. They read only the dict, so a recorded results.json can be re-rendered later."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

IMPL_ORDER = ("torch-cpu", "torch-cuda", "numpy", "torchvision-cpu", "torchvision-cuda")
HEADERS = ("case", "batch", "impl", "p50 ms", "p90 ms", "mean ms", "min–max ms", "iters", "det/img", "vs torchvision")


def _ratio_text(r: dict[str, Any]) -> str:
    ratio = r.get("ratio_vs_torchvision")
    return "—" if ratio is None else f"{ratio:.2f}×"


def table_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row of strings per (case, batch, implementation), in run order."""
    return [
        (r["case"], str(r["batch"]), r["impl"], f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['mean_ms']:.2f}",
         f"{r['min_ms']:.2f}–{r['max_ms']:.2f}", str(r["iters"]), f"{r['detections_per_image']:.1f}", _ratio_text(r))
        for r in report["results"]
    ]


def settings_line(report: dict[str, Any]) -> str:
    """The shared postprocess settings in one line (per case when they differ)."""
    per_case = report["settings"]["per_case"]

    def text(s: dict[str, Any]) -> str:
        topk = "all" if s["topk_candidates"] is None else s["topk_candidates"]
        return (f"score > {s['score_threshold']:g}, IoU > {s['iou_threshold']:g} suppresses, top-{topk} per class, "
                f"max {s['max_detections']} per image")

    texts = {case: text(s) for case, s in per_case.items()}
    if len(set(texts.values())) == 1:  # one line when every case shares them
        return f"settings ({report['settings']['source']}, every case): {next(iter(texts.values()))}"
    return f"settings ({report['settings']['source']}): " + "; ".join(f"{c}: {t}" for c, t in texts.items())


def rich_table(report: dict[str, Any]) -> Any:
    """A rich Table; ratios > 1 (ours faster than torchvision) green, < 1 red."""
    from rich.table import Table

    table = Table(*HEADERS, title="postprocess latency per batch (ms per call); vs torchvision = its p50 / this p50")
    for r, row in zip(report["results"], table_rows(report)):
        ratio = r.get("ratio_vs_torchvision")
        style = "" if ratio is None else ("green" if ratio >= 1 else "red")
        table.add_row(*row[:-1], f"[{style}]{row[-1]}[/]" if style else row[-1])
    return table


def markdown(report: dict[str, Any], command: str | None = None) -> str:
    """results.md: command, machine, settings, the table and per-case inputs."""
    from ssdtrt.bench.markdown import md_table, report_head

    lines = report_head("Postprocess benchmark", command, report.get("machine", {}))
    lines += [
        settings_line(report) + f"; torch threads {report.get('threads')}.",
        f"Outputs checked equal before timing (boxes within {report['tolerances']['box_atol_normalized']:g} "
        f"normalized, scores within {report['tolerances']['score_atol']:g}, labels equal, tie-aware). "
        f"Warm-up {report['warmup']}, up to {report['iters']} timed calls"
        + (f" (at most ~{report['max_seconds']:g} s each configuration)" if report.get("max_seconds") else "")
        + ". vs torchvision = torchvision p50 / this p50 (> 1: faster than torchvision).",
        "",
        *md_table(HEADERS, table_rows(report)),
    ]
    lines += ["", "Inputs:", ""]
    seen = set()
    for c in report["cases"]:
        if c["case"] not in seen:
            seen.add(c["case"])
            lines.append(f"- **{c['case']}**: {c['description']}; {c['num_priors']} priors, {c['num_classes']} classes "
                         f"(with background), {c['image_hw'][0]}x{c['image_hw'][1]} px.")
        lines.append(f"  - batch {c['batch']}: {c['candidates_per_image']:.0f} NMS candidates per image")
    lines += [f"- note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Grouped bars: one group per (case, batch), one bar per implementation (p50, whisker to p90), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ssdtrt.io.files import atomic_path

    results = report["results"]
    groups = list(dict.fromkeys((r["case"], r["batch"]) for r in results))
    impls = [i for i in IMPL_ORDER if any(r["impl"] == i for r in results)]
    impls += sorted({r["impl"] for r in results} - set(impls))
    by_key = {(r["case"], r["batch"], r["impl"]): r for r in results}
    width = 0.8 / max(len(impls), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 2), 4.5))
    x = np.arange(len(groups))
    for k, impl in enumerate(impls):
        rows = [by_key.get((case, batch, impl)) for case, batch in groups]
        p50 = np.array([r["p50_ms"] if r else np.nan for r in rows])
        p90 = np.array([r["p90_ms"] if r else np.nan for r in rows])
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, p50, width, label=impl, yerr=[np.zeros_like(p50), np.nan_to_num(p90 - p50)], capsize=2)
        for xi, r in zip(pos, rows):
            if r and r.get("ratio_vs_torchvision") is not None:
                ax.annotate(f"{r['ratio_vs_torchvision']:.1f}×", (xi, r["p90_ms"]), ha="center", va="bottom",
                            fontsize=6, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, [f"{case}\nbatch {batch}" for case, batch in groups], fontsize=8)
    ax.set_ylabel("p50 latency per batch (ms, log)")
    ax.set_yscale("log")
    ax.set_title("SSD postprocess: ours vs torchvision (labels: speed-up vs torchvision)", fontsize=10)
    ax.legend(fontsize=8, ncol=min(len(impls), 5), loc="upper left")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)
