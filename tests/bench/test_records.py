"""Benchmark records are re-runnable anywhere: no committed record under benchmarks/ names an absolute path of the
machine that produced it, and the helper every recorder writes paths through makes them relative to the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ssdtrt.bench.record_paths import OUTSIDE, portable_path, portable_record, portable_text, repository_root

ROOT = Path(__file__).resolve().parents[2]
RECORD_SUFFIXES = {".json", ".md", ".txt", ".csv"}
# an absolute path under a folder that only exists on some machine (after a non-path character: not "img/s")
ABSOLUTE = re.compile(
    r"(?<![\w/.~$-])/(?:work|tmp|root|home|Users|mnt|opt|var|private|scratch|data|srv|nfs|usr)/[\w.+@%=-]+"
)


def committed_records() -> list[Path]:
    """Record files under benchmarks/: the ones git tracks, or every one on disk when this is not a git checkout."""
    folder = ROOT / "benchmarks"
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "benchmarks"], capture_output=True, text=True,
                                check=True, timeout=60).stdout.split()
        files = [ROOT / name for name in listed]
    except (OSError, subprocess.SubprocessError):
        files = [p for p in folder.rglob("*") if p.is_file()]
    return sorted(p for p in files if p.suffix in RECORD_SUFFIXES and p.is_file())


def test_committed_records_hold_no_absolute_paths() -> None:
    records = committed_records()
    assert len(records) >= 20, "benchmarks/ records not found"  # the check must look at the real files
    found = [f"{p.relative_to(ROOT)}:{n}: {m.group(0)}" for p in records
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) for m in ABSOLUTE.finditer(line)]
    assert not found, "absolute paths in committed records (write them with ssdtrt.bench.record_paths):\n" + "\n".join(found[:20])


def test_the_check_catches_what_it_should() -> None:
    assert ABSOLUTE.search("ssdtrt bench serve /work/main/runs/demo/export/m.onnx --concurrency 1")
    assert ABSOLUTE.search('"checkpoint": "/tmp/pytest-of-root/x/best.pt"')
    assert ABSOLUTE.search("python = /home/ci/.venv/bin/python;")
    for fine in ("images/s", "runs/demo/train/best.pt", "http://127.0.0.1:8000/v2/models", "1/255", "./tmp/x",
                 "$PWD/tmp/x", "~/work/x"):
        assert not ABSOLUTE.search(fine), fine


def git_checkout(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / ".git").mkdir()
    return folder


def test_portable_path_rules(tmp_path: Path) -> None:
    repo = git_checkout(tmp_path / "repo")
    sibling = git_checkout(tmp_path / "other-worktree")
    assert portable_path(repo / "runs" / "demo" / "best.pt", repo) == "runs/demo/best.pt"
    assert portable_path(repo, repo) == "."
    assert portable_path(sibling / "runs" / "m.onnx", repo) == "runs/m.onnx"  # another checkout: its own root
    assert portable_path("/opt/venv/lib/python3.11/site-packages/numpy/lib/x.py", repo) == "numpy/lib/x.py"
    assert portable_path(tmp_path / "loose" / "m.onnx", repo) == f"{OUTSIDE}/m.onnx"
    assert portable_path("runs/x.onnx", repo) == "runs/x.onnx"  # already relative: unchanged
    assert portable_path(repo / "a" / ".." / "b.json", repo) == "b.json"
    (repo / "runs").mkdir()
    assert repository_root(repo / "runs") == repo.absolute()


def test_portable_text_and_record(tmp_path: Path) -> None:
    repo = git_checkout(tmp_path / "repo")
    model = repo / "runs" / "m.onnx"
    text = f"ssdtrt bench serve {model} --url http://127.0.0.1:8000/v2 at 12 img/s; model `{model}`"
    assert portable_text(text, repo) == "ssdtrt bench serve runs/m.onnx --url http://127.0.0.1:8000/v2 at 12 img/s; " \
                                        "model `runs/m.onnx`"
    record = {"settings": {"model": str(model), "path": model, "sizes": [1, 2]}, "command": text, "n": 3, "x": None}
    out = portable_record(record, repo)
    assert out["settings"] == {"model": "runs/m.onnx", "path": "runs/m.onnx", "sizes": [1, 2]}
    assert out["n"] == 3 and out["x"] is None and str(tmp_path) not in repr(out)
    assert record["settings"]["model"] == str(model)  # the input is not modified


def test_bench_latency_record_holds_no_absolute_path(
    small_raw_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real recorder: `ssdtrt bench latency` on a model given by its absolute path (outside the repository) writes
    JSON and markdown that name it without the machine's folders, in the settings and in the recorded command."""
    import json

    from ssdtrt.cli.app import main

    out_json, out_md = tmp_path / "lat.json", tmp_path / "lat.md"
    args = ["bench", "latency", str(small_raw_onnx.absolute()), "--backend", "onnxruntime", "--batch-sizes", "1",
            "--warmup", "1", "--iters", "2", "--threads", "1", "--json", str(out_json), "--markdown", str(out_md)]
    monkeypatch.setattr(sys, "argv", ["ssdtrt", *args])  # as typed at a console: the report records the command
    monkeypatch.chdir(ROOT)
    assert main(args) == 0
    report = json.loads(out_json.read_text())
    assert report["results"][0]["model"] == f"{OUTSIDE}/{small_raw_onnx.name}"
    assert report["command"].startswith(f"ssdtrt bench latency {OUTSIDE}/{small_raw_onnx.name} ")
    for text in (out_json.read_text(), out_md.read_text()):
        assert str(small_raw_onnx.parent) not in text and not ABSOLUTE.search(text), text[:2000]
