"""A defocus-conditioned model through a real gateway process over real gRPC: the request's
defocus offsets reach the network (dD 0.5 and 3 give different tiles, the same offsets the same
tile), a pair outside the trained dD is flagged for rescan with the reason, the optional
pixel_size_um is checked against the model's (INVALID_ARGUMENT naming both values); the model
contract reads the optional `dd` input. Through a real tritonserver too (its Python backend running
the same ONNX file), with dd inside gRPC and through system shared memory."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
from skimage import data
from tsva.common.images import decode_image, encode_image
from tsva.export.metadata import model_metadata
from tsva.export.network import NetworkConfig, build_network
from tsva.export.onnx_export import export_onnx
from tsva.export.optics import Optics
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.gateway import start_gateway
from tests.support.triton_harness import TritonServer

SHARP = data.astronaut()[:96, :128]

SOFT = (SHARP // 2 + 60).astype(np.uint8)


@pytest.fixture(scope="module")
def conditioned_model(tmp_path_factory):
    torch.manual_seed(0)
    net = build_network(NetworkConfig(base_width=4, depth=2, condition="defocus"))
    with torch.no_grad():  # weights where dD visibly matters
        torch.nn.init.normal_(net.decoder.head.weight, std=0.2)
        net.encoder.levels[0][0].weight[:, 3].normal_(0, 2.0)
    net.eval()
    path = tmp_path_factory.mktemp("cond") / "cond.onnx"
    meta = model_metadata(net.config, Optics(), patch_size=64, training_data="test", training_command="test",
                          evaluation_summary="none")
    export_onnx(net, path, meta)
    return path


def _request(dd, **kw):
    return pb.FuseRequest(tile_id=f"dd{dd}", shot_a=encode_image(SHARP, "raw"), shot_b=encode_image(SOFT, "raw"),
                          defocus_a_um=-dd, defocus_b_um=dd, **kw)


@pytest.mark.slow
def test_a_conditioned_model_gets_the_requests_dd(conditioned_model):
    with start_gateway(conditioned_model) as gw, gw.channel() as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        near, far = (stub.Fuse(_request(dd), timeout=60) for dd in (0.5, 3.0))
        again = stub.Fuse(_request(0.5), timeout=60)
        a, b = decode_image(near.fused), decode_image(far.fused)
        assert not np.array_equal(a, b)                           # the offsets change the tile
        assert np.array_equal(a, decode_image(again.fused))       # and only they
        outside = stub.Fuse(_request(5.0), timeout=60)            # beyond the trained 0.5..3 um
        assert outside.rescan and "outside the trained" in outside.rescan_reason
        assert stub.Fuse(_request(1.0, pixel_size_um=0.26), timeout=60).fused.width == 128  # within 10 %
        with pytest.raises(grpc.RpcError) as err:
            stub.Fuse(_request(1.0, pixel_size_um=0.5), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "pixel_size_um" in err.value.details() and "0.5" in err.value.details() and "0.25" in err.value.details()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["off", "system"])
def test_a_conditioned_model_on_triton_gets_the_requests_dd(conditioned_model, transport):
    """The Triton backend sends each item's dD beside its pixels (gRPC or shared memory): the
    tiles equal the embedded backend's at dD 0.5 and 3, and differ between them."""
    def fused(stub, dd):
        return decode_image(stub.Fuse(_request(dd), timeout=60).fused)

    with TritonServer(conditioned_model) as triton:
        with start_gateway(conditioned_model) as embedded, embedded.channel() as ch:
            reference = {dd: fused(pb_grpc.VirtualAutofocusStub(ch), dd) for dd in (0.5, 3.0)}
        with start_gateway(conditioned_model, backend="triton", triton_urls=triton.url,
                           triton_shared_memory=transport) as gw, gw.channel() as ch:
            stub = pb_grpc.VirtualAutofocusStub(ch)
            via_triton = {dd: fused(stub, dd) for dd in (0.5, 3.0)}
            assert stub.GetInfo(pb.GetInfoRequest(), timeout=10).backend == "triton"
    assert not np.array_equal(via_triton[0.5], via_triton[3.0])
    for dd in (0.5, 3.0):
        diff = np.abs(via_triton[dd].astype(int) - reference[dd].astype(int)).max()
        assert diff <= 1, f"dD {dd}: max abs difference {diff} from the embedded backend"
