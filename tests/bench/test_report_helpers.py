"""Shared CLI parsing (`ssdtrt.cli.common`) and the report pieces every benchmark prints (`ssdtrt.bench.machine`,
`ssdtrt.bench.markdown`): values parsed or rejected with the option's name, one machine line, pipe tables."""

from __future__ import annotations

import pytest
import typer

from ssdtrt.bench.machine import machine_info, machine_line
from ssdtrt.bench.markdown import md_table, report_head
from ssdtrt.cli.common import csv_ints, size_hw


def test_csv_ints_parses_and_names_the_option_on_error() -> None:
    assert csv_ints("1,8, 32", "--batch-sizes") == (1, 8, 32)
    assert csv_ints("4,", "--concurrency") == (4,)
    for bad in ("", "1,x", "0,2", "-1"):
        with pytest.raises(typer.BadParameter, match="--batch-sizes"):
            csv_ints(bad, "--batch-sizes")


def test_size_hw_is_height_then_width() -> None:
    assert size_hw("480x640") == (480, 640) and size_hw("720X1280") == (720, 1280)
    assert size_hw(None) is None and size_hw("") is None
    for bad in ("640", "axb", "1x2x3"):
        with pytest.raises(typer.BadParameter, match="--image-size"):
            size_hw(bad)


def test_machine_line_names_every_field_and_marks_missing_ones() -> None:
    info = {"cpu_model": "CPU-Z 9", "cpu_cores": 3, "cpu_flags": {"avx2": True, "avx512f": False, "fma": True},
            "memory_gib": 7.5, "gpus": [{"name": "GPU-A"}, {"name": "GPU-B"}], "platform": "Plat-1",
            "python": "3.11.0", "packages": {"numpy": "1.26.4", "torch": "2.0"}, "ssdtrt_commit": "abc123"}
    line = machine_line(info)
    assert line == ("Machine: CPU-Z 9 (3 usable cores; flags: avx2, fma), 7.5 GiB, GPU: GPU-A, GPU-B. Plat-1, "
                    "Python 3.11.0; numpy 1.26.4, torch 2.0; ssdtrt abc123.")
    empty = machine_line({})
    assert empty.startswith("Machine: ? (? usable cores; flags: n/a), ? GiB, GPU: none.") and "\n" not in empty
    here = machine_line(machine_info())  # this machine: real values, one line
    assert str(machine_info()["cpu_cores"]) in here and "\n" not in here


def test_report_head_and_md_table() -> None:
    head = report_head("Latency", "ssdtrt bench latency m.onnx", {"cpu_model": "X"})
    assert head[:2] == ["# Latency", ""] and "ssdtrt bench latency m.onnx" in head and head[-1] == ""
    assert head[-2].startswith("Machine: X ")
    assert "Command:" not in report_head("Latency", None, {})
    assert md_table(["variant", "p50"], [["a", "1.0"], ["b", "2.0"]], numbers_right=True) == [
        "| variant | p50 |", "|---|---:|", "| a | 1.0 |", "| b | 2.0 |"]
    assert md_table(["step", "seconds"], [])[1] == "|---|---|"
