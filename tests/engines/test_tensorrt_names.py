"""Every TensorRT name our code calls exists in NVIDIA's real Python bindings of 10.0, 10.16 and 11.4, every call
passes the parameters NVIDIA's pybind11 definitions (python/src at v10.0.1, v10.16, v11.1) bind, and every
cuda-python name exists in the installed cuda-bindings — checked without TensorRT or a GPU.

The TensorRT name lists are extracted from the genuine `tensorrt-cuXX-bindings` wheels' `tensorrt.so` string table
by tests/fixtures/tensorrt_names/extract_names.py (committed; wheel names in each file's first line); the signatures
by extract_signatures.py from the NVIDIA/TensorRT repository at those tags (commit recorded in each file). Our code is
read with `ast`: every attribute taken from the `tensorrt` module or from a TensorRT object (per-file receivers).
"""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tensorrt_names"
VERSIONS = ("10.0.1", "10.16.1.11", "11.4.0.106")

# file -> expressions that hold TensorRT objects there (besides the `trt` module itself)
TRT_RECEIVERS = {
    "ssdtrt/runtime/tensorrt_runner.py": {"self._trt", "runtime", "engine", "self._engine", "context", "slot.context"},
    "ssdtrt/runtime/tensorrt_torch.py": {"slot.context"},
    "ssdtrt/engines/tensorrt_builder.py": {"builder", "network", "parser", "config", "profile", "tensor", "err", "cache"},
    "ssdtrt/engines/tensorrt_inspect.py": {"runtime", "engine", "inspector"},
}
# read through getattr/hasattr where absent: they need to exist in one major only
OPTIONAL = {"node_name", "node_operator", "node", "STRONGLY_TYPED"}
CORE = {"execute_async_v3", "set_tensor_address", "set_input_shape", "deserialize_cuda_engine", "set_timing_cache",
        "get_timing_cache", "create_timing_cache", "build_serialized_network", "engine_host_code_allowed",
        "create_engine_inspector", "get_engine_information", "DETAILED", "JSON", "nptype", "__version__"}
CUDART_FILES = ("ssdtrt/runtime/cuda_buffers.py", "ssdtrt/runtime/tensorrt_runner.py")


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _attributes(path: str) -> list[tuple[str, str]]:
    """(receiver expression, attribute) for every attribute access in the file."""
    tree = ast.parse((ROOT / path).read_text())
    return [(base, node.attr) for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            if (base := _dotted(node.value)) is not None]


def _used_tensorrt_names() -> set[str]:
    used = set()
    for path, receivers in TRT_RECEIVERS.items():
        for base, attr in _attributes(path):
            if base == "trt" or base.startswith("trt.") or base in receivers:
                used.add(attr)
    return used


def _binding_names(version: str) -> set[str]:
    lines = (FIXTURES / f"tensorrt-{version}.txt").read_text().splitlines()
    assert lines[0].startswith("# tensorrt_cu1"), "fixture header names the wheel it came from"
    return {ln for ln in lines[1:] if ln}


def test_fixtures_discriminate_between_majors() -> None:
    """The lists are real: APIs removed in 11 (migration guide) are in 10.x and not in 11.4; pre-10 ones in neither."""
    v10, v11 = _binding_names("10.16.1.11"), _binding_names("11.4.0.106")
    for removed_in_11 in ("int8_calibrator", "platform_has_fast_fp16", "EXPLICIT_BATCH", "device_memory_size"):
        assert removed_in_11 in v10 and removed_in_11 not in v11, removed_in_11
    for removed_in_10 in ("execute_async_v2", "get_binding_index"):
        assert removed_in_10 not in v10 | v11


def test_every_tensorrt_name_we_call_exists_in_10_and_11() -> None:
    used = _used_tensorrt_names()
    assert CORE <= used, f"the AST walk lost names: {sorted(CORE - used)}"
    for version in VERSIONS:
        missing = used - OPTIONAL - _binding_names(version)
        assert not missing, f"TensorRT {version} bindings lack {sorted(missing)}"
    every = set().union(*(_binding_names(v) for v in VERSIONS))
    assert OPTIONAL & used <= every


def test_every_cuda_python_name_we_call_exists() -> None:
    try:
        cudart = importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        pytest.skip("cuda-python (cuda-bindings) is not installed")
    chains = set()
    for path in CUDART_FILES:
        for base, attr in _attributes(path):
            if base in ("cudart", "self._cudart"):
                chains.add(attr)
            elif base.startswith(("cudart.", "self._cudart.")):
                chains.add(base.split("cudart.", 1)[1] + "." + attr)
    assert {"cudaSetDevice", "cudaMallocHost", "cudaFreeHost", "cudaMemcpyAsync", "cudaStreamCreate"} <= chains
    for chain in sorted(chains):
        obj = cudart
        for part in chain.split("."):
            assert hasattr(obj, part), f"cuda.bindings.runtime has no {chain}"
            obj = getattr(obj, part)


# -- arity: our calls against the pybind11 definitions in NVIDIA/TensorRT python/src ------------------------------------
SIGNATURE_TAGS = ("v10.0.1", "v10.16", "v11.1")
MUST_CHECK = {"set_timing_cache", "create_timing_cache", "set_tensor_address", "execute_async_v3", "set_input_shape",
              "set_shape", "deserialize_cuda_engine", "get_engine_information", "create_execution_context",
              "Runtime.__init__", "OnnxParser.__init__", "Builder.__init__", "Logger.__init__"}


def _trt_calls() -> list[tuple[str, str, ast.Call]]:
    """(file, signature key, call) for calls of TensorRT methods and constructors in our code."""
    calls = []
    for path, receivers in TRT_RECEIVERS.items():
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            base = _dotted(node.func.value)
            if base in receivers:
                calls.append((path, node.func.attr, node))
            elif base == "trt" and node.func.attr[:1].isupper():
                calls.append((path, f"{node.func.attr}.__init__", node))
    return calls


def _matches(call: ast.Call, variant: dict[str, list[str]]) -> bool:
    params, optional = variant["params"], set(variant["optional"])
    keywords = [k.arg for k in call.keywords]
    n_pos = len(call.args)
    if n_pos > len(params) or any(k not in params[n_pos:] for k in keywords):
        return False
    given = set(params[:n_pos]) | set(keywords)
    return all(p in given or p in optional for p in params)


@pytest.mark.parametrize("tag", SIGNATURE_TAGS)
def test_every_tensorrt_call_has_the_bound_arity(tag: str) -> None:
    data = json.loads((FIXTURES / f"signatures-{tag}.json").read_text())
    assert data["source"].startswith(f"NVIDIA/TensorRT {tag} (")
    sigs = data["signatures"]
    checked, wrong = set(), []
    for path, key, call in _trt_calls():
        if key not in sigs or any(isinstance(a, ast.Starred) for a in call.args):
            continue  # bound without named parameters: the name check above covers it
        checked.add(key)
        if not any(_matches(call, v) for v in sigs[key]):
            wrong.append(f"{path}:{call.lineno} {key}({len(call.args)} positional, {[k.arg for k in call.keywords]}) "
                         f"vs {sigs[key]}")
    assert not wrong, "\n".join(wrong)
    assert MUST_CHECK <= checked, f"not checked against {tag}: {sorted(MUST_CHECK - checked)}"


def test_arity_check_can_fail() -> None:
    """The matcher rejects a call that TensorRT would reject (one argument missing, one too many, a wrong keyword)."""
    variant = {"params": ["cache", "ignore_mismatch"], "optional": []}
    parse = lambda src: ast.parse(src).body[0].value  # noqa: E731
    assert _matches(parse("config.set_timing_cache(cache, False)"), variant)
    assert _matches(parse("config.set_timing_cache(cache, ignore_mismatch=True)"), variant)
    assert not _matches(parse("config.set_timing_cache(cache)"), variant)
    assert not _matches(parse("config.set_timing_cache(cache, False, 1)"), variant)
    assert not _matches(parse("config.set_timing_cache(cache, ignoreMismatch=True)"), variant)


def test_every_cuda_python_call_binds_to_its_signature() -> None:
    """Each `cudart.cudaX(...)` call in our code binds to the installed cuda-bindings' signature of cudaX."""
    import inspect

    try:
        cudart = importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        pytest.skip("cuda-python (cuda-bindings) is not installed")
    checked, wrong = set(), []
    for path in CUDART_FILES:
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if _dotted(node.func.value) not in ("cudart", "self._cudart") or not node.func.attr.startswith("cuda"):
                continue
            fn = getattr(cudart, node.func.attr)
            if not callable(fn) or isinstance(fn, type):
                continue
            try:
                inspect.signature(fn).bind(*node.args, **{k.arg: k.value for k in node.keywords})
            except TypeError as err:
                wrong.append(f"{path}:{node.lineno} {node.func.attr}: {err}")
            checked.add(node.func.attr)
    assert not wrong, "\n".join(wrong)
    assert {"cudaMemcpyAsync", "cudaMallocHost", "cudaSetDevice", "cudaEventElapsedTime", "cudaFreeHost"} <= checked
