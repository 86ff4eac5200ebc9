"""Brenner gradient: hand-computed cases, the pitfall variants it must not be, the z-stack search,
and the same figures as the gateway returns them over real gRPC (Fuse and FindFocus)."""
import grpc
import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from tsva.common.brenner import brenner, refine_peak
from tsva.common.images import decode_image, encode_image
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def stub(gateway):
    with gateway.channel() as channel:
        yield pb_grpc.VirtualAutofocusStub(channel)


def blurred(sigma: float) -> np.ndarray:
    image = data.astronaut()[100:228, 150:310]
    if sigma == 0:
        return image.copy()
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0)).astype(np.uint8)


def test_fuse_reports_brenner_and_orders_shots(stub):
    sharp, soft = blurred(0.0), blurred(2.0)
    reply = stub.Fuse(pb.FuseRequest(tile_id="t1", shot_a=encode_image(soft), shot_b=encode_image(sharp)), timeout=60)
    assert reply.brenner_a == pytest.approx(brenner(soft), rel=1e-9)
    assert reply.brenner_b == pytest.approx(brenner(sharp), rel=1e-9)
    assert reply.y1_shot == pb.SHOT_B  # shot_b is sharper: it is Y1
    fused = decode_image(reply.fused).astype(np.float64)
    expected = 0.75 * sharp + 0.25 * soft  # the tiny model: 0.75 Y1 + 0.25 Y2
    assert np.abs(fused - expected).max() <= 1.0

    reply = stub.Fuse(pb.FuseRequest(tile_id="t2", shot_a=encode_image(sharp), shot_b=encode_image(soft)), timeout=60)
    assert reply.y1_shot == pb.SHOT_A
    assert np.abs(decode_image(reply.fused) - (0.75 * sharp + 0.25 * soft)).max() <= 1.0


def test_find_focus_over_grpc(stub):
    sigmas = [3.0, 1.5, 0.6, 0.0, 0.8, 2.0]
    z = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0]
    planes = [blurred(s) for s in sigmas]
    reply = stub.FindFocus(pb.FindFocusRequest(tile_id="stack", planes=[encode_image(p, "png") for p in planes],
                                               z_um=z), timeout=60)
    assert reply.tile_id == "stack"
    assert reply.best_index == 3 and reply.best_z_um == 0.0
    assert list(reply.brenner) == pytest.approx([brenner(p) for p in planes], rel=1e-9)
    scores = np.array([brenner(p) for p in planes])
    assert reply.refined_z_um == pytest.approx(refine_peak(np.array(z), scores, 3))
    assert -0.5 < reply.refined_z_um < 0.5


@pytest.mark.parametrize("planes, z, field", [
    ([], [], "planes: empty"),
    ([np.zeros((8, 8), np.uint8)] * 2, [0.0], "z_um: 1 values for 2 planes"),
    ([np.zeros((8, 8), np.uint8)] * 3, [0.0, 1.0, 1.0], "z_um: must be strictly"),
    ([np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8)], [0.0, 1.0], "planes[1]: 9x8x1 uint8 does not match"),
])
def test_find_focus_bad_input(stub, planes, z, field):
    with pytest.raises(grpc.RpcError) as info:
        stub.FindFocus(pb.FindFocusRequest(tile_id="zs", planes=[encode_image(p) for p in planes], z_um=z),
                       timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(f"tile 'zs': {field}")
