"""The shared distribution tsva-common: what the training side imports pulls in neither gRPC nor the
client or gateway packages (checked in a fresh interpreter, so other tests' imports do not count)."""
import subprocess
import sys

TRAINING_SIDE = ["tsva.common.images", "tsva.common.brenner", "tsva.common.contract", "tsva.common.credentials",
                 "tsva.common.limits", "tsva.export.optics", "tsva.export.train", "tsva.export.evaluate",
                 "tsva.export.onnx_export", "tsva.export.zstack", "tsva.export.dataset"]


def test_training_side_imports_no_grpc_client_or_gateway():
    probe = ("import sys\n" + "".join(f"import {m}\n" for m in TRAINING_SIDE) +
             "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'tsva.client', 'tsva.server'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
