"""ssdtrt ensemble step 3 (Triton python backend): network outputs + original sizes -> the serving contract
(num_detections, boxes xyxy in pixels, scores, labels; padded to K = max_detections), via Detector.postprocess."""

import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ssdtrt_triton.py beside this file
import ssdtrt_triton  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.contract, self.detector = ssdtrt_triton.load_stages(args, with_settings=True)
        self.k = self.detector.settings.max_detections
        self.net_outputs = [t.name for t in self.detector.manifest.outputs]

    def execute(self, requests):
        counts, parts, sizes = [], {n: [] for n in self.net_outputs}, []
        for request in requests:
            for name in self.net_outputs:
                parts[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            hw = pb_utils.get_input_tensor_by_name(request, "image_size_hw").as_numpy()
            sizes.append(hw)
            counts.append(hw.shape[0])
        outputs = {n: np.concatenate(v) for n, v in parts.items()}
        sizes_hw = [tuple(int(v) for v in row) for row in np.concatenate(sizes)]
        packed = self.contract.pack_detections(self.detector.postprocess(outputs, sizes_hw), self.k)
        responses, start = [], 0
        for n in counts:
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(packed[name][start:start + n]))
                for name in self.contract.OUTPUT_NAMES
            ]))
            start += n
        return responses
