"""ssdtrt ensemble step 2 for `--detector python`: the network through ssdtrt's own runner (ONNX Runtime or
OpenVINO) inside Triton's python backend; the requests Triton batched run as one runner call."""

import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ssdtrt_triton.py beside this file
import ssdtrt_triton  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params, config = ssdtrt_triton.parameters(args)
        ssdtrt_triton.import_ssdtrt(params)
        from ssdtrt.inference.detector import Detector

        artifact = os.path.join(ssdtrt_triton.version_dir(args), params["artifact"])
        options = {"verify_hash": params.get("verify_hash", "1") != "0"}  # export-triton --no-verify writes "0"
        if params.get("threads", ""):
            key = "num_threads" if params.get("runner", "") == "openvino" else "intra_op_threads"
            options[key] = int(params["threads"])
        self.detector = Detector(artifact, backend=params.get("runner") or None, **options)
        self.detector.runner.activate()
        self.input_name = self.detector.input.name
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        outputs = self.detector.infer(np.concatenate(batches))
        responses, start = [], 0
        for batch in batches:
            n = batch.shape[0]
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(np.asarray(outputs[name])[start:start + n]))
                for name in self.output_names
            ]))
            start += n
        return responses

    def finalize(self):
        self.detector.close()
