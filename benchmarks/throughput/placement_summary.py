"""Summarize `run_placement.sh`: per model and placement, pipeline ÷ bare raw-heads throughput (from `bench
throughput`, rounds interleaved inside each model) and batch-1 end-to-end p50 ÷ bare raw-heads inference p50 (from
the alternated `bench latency` runs: each run's host-placed variant gives the raw-heads inference p50 of that run).

    python benchmarks/throughput/placement_summary.py --throughput T.json --latency L1.json L2.json ... \
        --machine placement-machine.txt --out placement.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import median
from typing import Any


def _placement(model: str) -> str:
    name = Path(model).stem
    return "engine pre+post" if name.endswith("engine-u8") else "engine post" if name.endswith("engine") else "host"


def _family(model: str) -> str:
    return Path(model).stem.rsplit("-", 2 if Path(model).stem.endswith("engine-u8") else 1)[0]


def throughput_rows(report: dict[str, Any]) -> list[str]:
    rows = []
    for r in report["results"]:
        rounds = ", ".join(f"{x['ratio']:.2f}" for x in r["rounds"])
        rows.append(f"| {Path(r['model']).name} | {_placement(r['model'])} | {r['settings']['batch_size']} | "
                    f"{r['images_per_second']:.1f} | {r['bare_images_per_second']:.1f} | {r['settings']['bare_reference']} | "
                    f"**{r['ratio']:.2f}** ({rounds}) | {r['latency_ms']['p50']:.1f} |")
    return rows


def latency_rows(runs: list[dict[str, Any]]) -> list[str]:
    """Per model: median over the runs of (e2e p50 ÷ the same run's host-placed inference p50), and the stages."""
    per: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for run in runs:
        ref = {_family(r["model"]): r["stages"]["inference"]["p50"] for r in run["results"]
               if _placement(r["model"]) == "host" and r["batch_size"] == 1 and "stages" in r}
        for r in run["results"]:
            if r["batch_size"] == 1 and "stages" in r and _family(r["model"]) in ref:
                per.setdefault(r["model"], []).append((r["stages"]["e2e"]["p50"] / ref[_family(r["model"])], r["stages"]))
    rows = []
    for model, items in per.items():
        ratios = [x[0] for x in items]
        st = {k: median(x[1][k]["p50"] for x in items) for k in ("preprocess", "inference", "postprocess", "e2e")}
        rows.append(f"| {Path(model).name} | {_placement(model)} | {st['preprocess']:.2f} | {st['inference']:.2f} | "
                    f"{st['postprocess']:.2f} | {st['e2e']:.2f} | **{median(ratios):.3f}** "
                    f"({', '.join(f'{x:.3f}' for x in ratios)}) |")
    return rows


def netsize(path: Path | None) -> list[str]:
    """The optional table of the same builds on frames already at the network size (no host resize)."""
    if path is None:
        return []
    report = json.loads(path.read_text())
    size = "×".join(str(x) for x in report["settings"]["image_size_hw"])
    return [f"## Throughput on frames already at the network size ({size}: no host resize)", "",
            "| model | placement | batch | pipeline img/s | bare img/s | bare reference | ratio (median; rounds) | latency p50 ms |",
            "|---|---|---:|---:|---:|---|---|---:|", *throughput_rows(report), ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--throughput", type=Path, required=True)
    ap.add_argument("--latency", type=Path, nargs="+", required=True)
    ap.add_argument("--throughput-netsize", type=Path, help="bench throughput JSON on frames at the network size")
    ap.add_argument("--machine", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    tp = json.loads(args.throughput.read_text())
    lat = [json.loads(p.read_text()) for p in args.latency]
    lines = ["# Placement: pipeline vs bare raw-heads (written by `bash benchmarks/throughput/run_placement.sh`)", "",
             "```", args.machine.read_text().strip(), "```", "",
             "Load averages above the core count mean other jobs shared the cores: the rounds then spread widely; read the "
             "ratios (each from one run, bare and pipeline alternated), not the absolute figures.", "",
             "## Throughput (480×640 decoded frames in; bare = the raw-heads IR's own loop, same requests and batch)", "",
             "| model | placement | batch | pipeline img/s | bare img/s | bare reference | ratio (median; rounds) | latency p50 ms |",
             "|---|---|---:|---:|---:|---|---|---:|", *throughput_rows(tp), "", *netsize(args.throughput_netsize),
             f"## Batch-1 latency, ms p50 (median over {len(lat)} alternated runs); ratio = e2e ÷ the run's raw-heads inference", "",
             "| model | placement | pre | infer | post | e2e | e2e ÷ raw-heads infer (median; runs) |",
             "|---|---|---:|---:|---:|---:|---|", *latency_rows(lat), ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
