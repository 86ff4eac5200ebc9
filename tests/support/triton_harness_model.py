"""Triton Python-backend model that runs the repository's ONNX file with ONNX Runtime on CPU.

The tritonserver binary shipped by nvidia-pytriton has only the Python backend (no ONNX Runtime
backend), so the tests serve the SAME ONNX file through this model: a CPU model of
model_repository/tsva_cpu. triton_harness.py copies it into a temporary repository as
`<model>/1/model.py`; it runs inside Triton's Python stub process, not under pytest.

Config parameters: `onnx_path` (absolute path of the ONNX file), `intra_op_threads`. A
defocus-conditioned ONNX file (a third input `dd`, float32 [N, 1]) gets each request's dd too.
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
        self.inputs = [i.name for i in self.session.get_inputs()]  # y1, y2 and maybe dd

    def execute(self, requests):
        # Each request is answered on its own: one bad request fails alone, as in Triton's own
        # backends. Requests of the same patch size are run as one ONNX Runtime batch.
        arrays = []
        for request in requests:
            arrays.append([pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs])
        responses = [None] * len(requests)
        by_shape: dict[tuple, list[int]] = {}
        for i, (y1, y2, *_) in enumerate(arrays):
            if y1.shape != y2.shape:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"y1 {list(y1.shape)} and y2 {list(y2.shape)} differ in shape"))
                continue
            by_shape.setdefault(y1.shape[1:], []).append(i)
        for indices in by_shape.values():
            feeds = {name: np.concatenate([arrays[i][k] for i in indices]) for k, name in enumerate(self.inputs)}
            try:
                (x,) = self.session.run(["x"], feeds)
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
