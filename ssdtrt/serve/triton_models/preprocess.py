"""ssdtrt ensemble step 1 (Triton python backend): encoded image bytes -> the network input + original size.

A request whose image does not decode gets its own Triton error; the other requests of the batch go on.
"""

import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ssdtrt_triton.py beside this file
import ssdtrt_triton  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.contract, self.detector = ssdtrt_triton.load_stages(args, with_settings=False)
        self.input_name = self.detector.input.name

    def execute(self, requests):
        contract = self.contract
        rows, owner = [], []
        for r, request in enumerate(requests):
            data = pb_utils.get_input_tensor_by_name(request, contract.INPUT_NAME).as_numpy()
            for row in data.reshape(data.shape[0], -1):
                rows.append(row)
                owner.append(r)
        decoded = contract.decode_rows(rows, [contract.INPUT_NAME] * len(rows))
        batch = self.detector.preprocess(decoded.images_rgb) if decoded.images_rgb else None
        sizes = np.asarray([img.shape[:2] for img in decoded.images_rgb], np.int32).reshape(-1, 2)
        where = {row: i for i, row in enumerate(decoded.rows)}
        owner = np.asarray(owner)
        responses = []
        for r in range(len(requests)):
            mine = np.flatnonzero(owner == r)
            bad = [decoded.errors[i] for i in mine if i in decoded.errors]
            if bad:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(bad[0])))
                continue
            idx = [where[i] for i in mine]
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(self.input_name, np.ascontiguousarray(batch[idx])),
                pb_utils.Tensor("image_size_hw", np.ascontiguousarray(sizes[idx])),
            ]))
        return responses
