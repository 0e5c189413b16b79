"""Probe: which input types survive PyTriton 0.7's python-backend stub, per numpy version on each side.

One PyTriton server (127.0.0.1, free ports) whose callable echoes what it received: dtype, shape and the sha256 of
the raw bytes of every input row. A tritonclient (HTTP and gRPC) sends the same payloads as
  bytes_row   BYTES  [1]         one encoded image per row (today's contract)
  u8_encoded  UINT8  [-1]        the encoded image's bytes as a 1-D tensor
  u8_pixels   UINT8  [-1,-1,3]   decoded pixels
and each row is "ok" when the server saw exactly the bytes that were sent. The answer travels as non-BYTES outputs
(UINT8 sha256, INT64 shape), so a BYTES failure on the way out cannot hide the input's fate.

    python probe_inputs.py --out r.json                 # the stub runs in this interpreter's environment (PyTriton default)
    python probe_inputs.py --stub-env DIR --out r.json  # the stub runs in venv DIR (Triton's EXECUTION_ENV_PATH)
    ... --via path                                      # ... or with DIR/bin first on the server's PATH

Writes one JSON object: numpy of this process, numpy of the stub's env, and per protocol/input what the callable
received and what came back (non-BYTES outputs, and one BYTES output).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import sysconfig
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def payloads() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    encoded = bytes(rng.integers(0, 256, 3000, dtype=np.uint8))  # arbitrary bytes incl. zeros, like a JPEG
    return {
        "bytes_row": np.array([[encoded]], dtype=object),
        "u8_encoded": np.frombuffer(encoded, np.uint8)[None, :],
        "u8_pixels": rng.integers(0, 256, (1, 37, 53, 3), dtype=np.uint8),
    }


def raw(value: np.ndarray) -> bytes:
    if value.dtype == object:
        return b"".join(bytes(v) for v in value.reshape(-1))
    return np.ascontiguousarray(value).tobytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stub-env", type=Path, default=None)
    parser.add_argument("--via", choices=("path", "execution-env"), default="execution-env",
                        help="how the stub gets --stub-env: PyTriton's PATH set-up, or Triton's EXECUTION_ENV_PATH")
    parser.add_argument("--out", type=Path, required=True, help="JSON report (PyTriton prints the server log)")
    args = parser.parse_args()

    from pytriton.decorators import batch  # noqa: F401  (import check)
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig
    import pytriton.server.triton_server as triton_server

    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)
    if args.stub_env is not None and args.via == "path":
        stub_env = args.stub_env.resolve()
        triton_server.get_triton_python_backend_python_env = lambda: stub_env

    callable_saw: list[dict] = []  # the callable runs in this process: what it got, independent of the way back

    def infer(requests):
        out = []
        for request in requests:
            row = {}
            for name in ("bytes_row", "u8_encoded", "u8_pixels"):
                if name in request:
                    value = np.asarray(request[name])
                    row[name] = value
            (name, value), = row.items()
            shape = np.full((1, 4), -1, np.int64)
            shape[0, : value.ndim] = value.shape
            digest = np.frombuffer(hashlib.sha256(raw(value)).digest(), np.uint8)[None, :]
            callable_saw.append({"input": name, "dtype": str(value.dtype), "shape": list(value.shape),
                                 "sha256": digest.tobytes().hex()[:16]})
            out.append({"sha256": digest, "shape": shape, "is_bytes": np.array([[value.dtype == object]], np.int32),
                        "sha256_text": np.array([[digest.tobytes().hex()[:16].encode()]], dtype=object)})
        return out

    # report the stub's numpy: the proxy model.py runs in the stub's interpreter; its numpy is what its env holds
    stub_python = (args.stub_env.resolve() if args.stub_env else Path(sys.exec_prefix)) / "bin" / "python"
    stub_numpy = os.popen(f"{stub_python} -c 'import numpy; print(numpy.__version__)'").read().strip()

    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    config = TritonConfig(http_address="127.0.0.1", http_port=http_port, grpc_address="127.0.0.1",
                          grpc_port=grpc_port, metrics_address="127.0.0.1", metrics_port=metrics_port)
    sent = payloads()
    expect = {k: f"{v.dtype}|{list(v.shape[1:])}|{hashlib.sha256(raw(v)).hexdigest()[:16]}" for k, v in sent.items()}
    report: dict = {"python": sys.version.split()[0], "process_numpy": np.__version__, "stub_numpy": stub_numpy,
                    "stub_env": "this interpreter's" if args.stub_env is None else f"separate venv via {args.via}",
                    "results": {}}
    triton = Triton(config=config)  # not `with`: entering starts the server and bind would load at once
    try:
        for name, value in sent.items():
            shape = (1,) if name == "bytes_row" else (-1,) if name == "u8_encoded" else (-1, -1, 3)
            dtype = bytes if name == "bytes_row" else np.uint8
            triton.bind(model_name=name, infer_func=infer,
                        inputs=[Tensor(name=name, dtype=dtype, shape=shape)],
                        outputs=[Tensor(name="sha256", dtype=np.uint8, shape=(32,)),
                                 Tensor(name="shape", dtype=np.int64, shape=(4,)),
                                 Tensor(name="is_bytes", dtype=np.int32, shape=(1,)),
                                 Tensor(name="sha256_text", dtype=bytes, shape=(1,))],
                        config=ModelConfig(max_batch_size=4), strict=False)
        if args.stub_env is not None and args.via == "execution-env":
            # the config PyTriton writes at run() keeps backend_parameters as model parameters
            for model in triton._model_manager.models:
                model._get_triton_model_config().backend_parameters["EXECUTION_ENV_PATH"] = str(args.stub_env.resolve())
        triton.run()
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient

        for proto, module, url in (("http", httpclient, f"127.0.0.1:{http_port}"),
                                   ("grpc", grpcclient, f"127.0.0.1:{grpc_port}")):
            client = module.InferenceServerClient(url)
            for name, value in sent.items():
                inp = module.InferInput(name, list(value.shape), "BYTES" if value.dtype == object else "UINT8")
                inp.set_data_from_numpy(value)
                before = len(callable_saw)
                outcome: dict = {"sent": expect[name]}
                try:
                    result = client.infer(name, [inp], timeout=60) if proto == "grpc" else client.infer(name, [inp])
                    for out_name in ("sha256", "shape", "is_bytes", "sha256_text"):
                        value_back = result.as_numpy(out_name)
                        outcome[f"answer_{out_name}"] = (
                            value_back.tobytes().hex()[:16] if out_name == "sha256"
                            else value_back.reshape(-1)[0].decode() if out_name == "sha256_text"
                            else value_back.tolist())
                except Exception as err:  # the point of the probe: record what fails and how
                    outcome["client_error"] = f"{type(err).__name__}: {str(err)[:200]}"
                saw = callable_saw[before:]
                outcome["callable_saw"] = saw
                outcome["input_ok"] = bool(saw) and saw[0]["sha256"] == expect[name].split("|")[2]
                outcome["answer_ok"] = outcome.get("answer_sha256") == expect[name].split("|")[2]
                outcome["bytes_answer_ok"] = outcome.get("answer_sha256_text") == expect[name].split("|")[2]
                report["results"][f"{proto}/{name}"] = outcome
            client.close()
    finally:
        triton.stop()
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
