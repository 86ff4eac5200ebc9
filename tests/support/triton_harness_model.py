"""Triton Python-backend model that runs the repository's ONNX file with ONNX Runtime on CPU.

The tritonserver binary shipped by nvidia-pytriton has only the Python backend (no ONNX Runtime
backend), so the tests serve the SAME ONNX file through this model: a CPU model of
model_repository/tsva_cpu. triton_harness.py copies it into a temporary repository as
`<model>/1/model.py`; it runs inside Triton's Python stub process, not under pytest.

Config parameters: `onnx_path` (absolute path of the ONNX file), `intra_op_threads`.
"""
import json

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            params["onnx_path"], sess_options=options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        # Each request is answered on its own: one bad request fails alone, as in Triton's own
        # backends. Requests of the same patch size are run as one ONNX Runtime batch.
        arrays = []
        for request in requests:
            y1 = pb_utils.get_input_tensor_by_name(request, "y1").as_numpy()
            y2 = pb_utils.get_input_tensor_by_name(request, "y2").as_numpy()
            arrays.append((y1, y2))
        responses = [None] * len(requests)
        by_shape: dict[tuple, list[int]] = {}
        for i, (y1, y2) in enumerate(arrays):
            if y1.shape != y2.shape:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"y1 {list(y1.shape)} and y2 {list(y2.shape)} differ in shape"))
                continue
            by_shape.setdefault(y1.shape[1:], []).append(i)
        for indices in by_shape.values():
            y1 = np.concatenate([arrays[i][0] for i in indices])
            y2 = np.concatenate([arrays[i][1] for i in indices])
            try:
                (x,) = self.session.run(["x"], {"y1": y1, "y2": y2})
            except Exception as exc:  # ONNX Runtime error: answer these requests with it
                for i in indices:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
                continue
            start = 0
            for i in indices:
                n = arrays[i][0].shape[0]
                out = pb_utils.Tensor("x", np.ascontiguousarray(x[start:start + n]))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                start += n
        return responses
