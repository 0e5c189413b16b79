"""`ssdtrt sensitivity` outputs: sensitivity.json, sensitivity.md (sorted table) and sensitivity.png (bar plot)."""

from __future__ import annotations

from pathlib import Path

from ssdtrt.export.sensitivity import SensitivityReport


def markdown_table(report: SensitivityReport) -> str:
    """The sorted table (most sensitive first) with the whole-model figures above it."""
    meta = report.meta
    head = [f"# INT8 sensitivity: {meta.get('model', '')} ({meta.get('method', '')} calibration)", "",
            f"Full INT8 head SQNR {report.int8_sqnr_db:.2f} dB on {report.sqnr_images} images."]
    if report.fp32_map is not None and report.int8_map is not None:
        head.append(f"mAP on {report.map_images} images: FP32 {report.fp32_map:.4f}, full INT8 {report.int8_map:.4f} "
                    f"({100 * (report.fp32_map - report.int8_map):+.2f} pts drop).")
    fb = meta.get("sqnr_fallback")
    if fb:
        head.append(f"Head SQNR ≥ {fb['min_sqnr_db']:g} dB needs {len(fb['float_layers'])} float layer(s) "
                    f"(reached {fb['sqnr_db']:.2f} dB; tried k → dB: {fb['tried_sqnr_db']}).")
    head += ["", "| # | layer | SQNR alone INT8 (dB) | SQNR gain left float (dB) | mAP drop alone INT8 (pts) | "
             "mAP gain left float (pts) |", "|---|---|---|---|---|---|"]

    def cell(v: float | None) -> str:
        return "" if v is None else f"{v:+.2f}"

    rows = [f"| {i} | `{r.layer}` | {r.sqnr_alone_db:.2f} | {r.sqnr_float_gain_db:+.2f} | "
            f"{cell(r.map_alone_drop_pts)} | {cell(r.map_float_gain_pts)} |" for i, r in enumerate(report.layers, 1)]
    return "\n".join(head + rows) + "\n"


def plot_png(report: SensitivityReport, path: Path) -> Path:
    """Horizontal bars: head SQNR with each layer alone INT8 (short bar = sensitive), most sensitive on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(reversed(report.layers))
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(layers) + 1.5))
    try:
        ax.barh([r.layer.strip("/").replace("/Conv", "") for r in layers], [r.sqnr_alone_db for r in layers],
                color="tab:blue", label="layer alone INT8")
        ax.axvline(report.int8_sqnr_db, color="tab:red", linestyle="--", label=f"full INT8 {report.int8_sqnr_db:.1f} dB")
        ax.set_xlabel("head-output SQNR vs FP32 (dB, higher = harmless)")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"INT8 sensitivity ({report.meta.get('method', '')})")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def write_report(report: SensitivityReport, out_dir: Path) -> dict[str, Path]:
    """The three files in `out_dir` (created); returns their paths by kind."""
    from ssdtrt.io.files import atomic_write_json, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "sensitivity.json", "md": out_dir / "sensitivity.md", "png": out_dir / "sensitivity.png"}
    atomic_write_json(paths["json"], report.to_dict())
    atomic_write_text(paths["md"], markdown_table(report))
    plot_png(report, paths["png"])
    return paths
