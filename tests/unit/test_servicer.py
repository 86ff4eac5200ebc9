"""The servicer (tsva.server.service) called directly, with a fake ServicerContext, on the
in-process data plane (tests.support.data_plane: fake backend in place of ONNX Runtime/Triton).
What a real gRPC server adds (flow control, deadlines, the wire) is tested in tests/e2e."""
import asyncio

import grpc
import pytest
from tsva.common.images import decode_image, encode_image
from tsva.server import translate
from tsva.server.service import VirtualAutofocusService
from tsva.v1 import tsva_pb2 as pb

from tests.support.data_plane import data_plane
from tests.support.fake_backend import FakeBackend
from tests.support.models import TINY_METADATA
from tests.support.tiles import assert_close, expected_fusion, sharp_and_blurred

SHARP, BLURRED = sharp_and_blurred(48, 64)


class FakeContext:
    """Stands in for grpc.aio.ServicerContext: abort() records the status and raises as gRPC's does."""

    def __init__(self):
        self.code = self.details = None

    async def abort(self, code, details=""):
        self.code, self.details = code, details
        raise grpc.aio.AbortError(f"{code}: {details}")

    def time_remaining(self):
        return None


def request(tile_id="t1", a=SHARP, b=BLURRED, **fields) -> bytes:
    message = pb.FuseRequest(tile_id=tile_id, slide_id="s1", position=pb.TilePosition(x=5, y=6),
                             shot_a=encode_image(a), **fields)
    if b is not None:
        message.shot_b.CopyFrom(encode_image(b))
    return message.SerializeToString()


def run(test, **options):
    async def main():
        async with data_plane(FakeBackend(metadata=TINY_METADATA), encoder=translate.encode_reply,
                              patch_size="tile", **options) as plane:
            service = VirtualAutofocusService(plane.pipeline, plane.metrics, plane.admission)
            return await test(service, plane)
    return asyncio.run(asyncio.wait_for(main(), 10))


def test_fuse_answers_the_fused_tile():
    async def test(service, plane):
        return await service.Fuse(request(defocus_a_um=-1, defocus_b_um=1), FakeContext()), plane

    reply, plane = run(test)
    assert (reply.tile_id, reply.slide_id, reply.position.x, reply.position.y) == ("t1", "s1", 5, 6)
    assert reply.y1_shot == pb.SHOT_A and reply.brenner_a > reply.brenner_b > 0
    assert reply.fused.encoding == pb.IMAGE_ENCODING_RAW and reply.timings.total_ms > 0
    assert_close(decode_image(reply.fused), expected_fusion(SHARP, BLURRED))
    assert reply.trained_focus_range_um == 2.0  # focus QC ran: 2 sigma of the model's 1 um
    assert plane.sample("tsva_tiles_total", outcome="ok") == 1


@pytest.mark.parametrize("raw, message", [
    (request(b=None), "tile 't1': shot_b: missing"),
    (request(output_encoding=7), "tile 't1': output_encoding: unknown value 7 (UNSPECIFIED, RAW, PNG or TIFF)"),
    (request(defocus_b_um=float("nan")), "tile 't1': defocus_b_um: nan is not a finite number"),
    (request(b=SHARP[:4]), "tile 't1': shot_b: 64x4x3 uint8 does not match shot_a 64x48x3 uint8 "
                           "(size, channels and pixel type must agree)"),
    (b"\x0a\x02t7\x22\x03xyz",
     "tile 't7': shot_a: not a valid tsva.v1.Image message (corrupt protobuf wire format)"),
])
def test_fuse_refuses_bad_requests_naming_field_and_tile(raw, message):
    context = FakeContext()

    async def test(service, plane):
        with pytest.raises(grpc.aio.AbortError):
            await service.Fuse(raw, context)
        return plane

    plane = run(test)
    assert (context.code, context.details) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert plane.sample("tsva_tiles_total", outcome="invalid_argument") == 1 and plane.backend.batches == []


def test_fuse_tiles_answers_every_request_once_errors_per_tile():
    async def requests():
        for raw in (request("a"), request("bad", b=SHARP[:4]), request("c", a=BLURRED, b=SHARP)):
            yield raw

    async def test(service, plane):
        replies = [reply async for reply in service.FuseTiles(requests(), FakeContext())]
        return replies, plane

    replies, plane = run(test)
    by_id = {reply.tile_id: reply for reply in replies}
    assert sorted(by_id) == ["a", "bad", "c"] and len(replies) == 3
    assert by_id["bad"].error.status == "INVALID_ARGUMENT" and by_id["bad"].error.code == 3
    assert by_id["bad"].error.message.startswith("tile 'bad': shot_b: 64x4x3 uint8 does not match")
    assert (by_id["bad"].position.x, by_id["bad"].position.y) == (5, 6)
    assert by_id["a"].y1_shot == pb.SHOT_A and by_id["c"].y1_shot == pb.SHOT_B
    for tile_id in "ac":
        assert not by_id[tile_id].HasField("error")
        assert_close(decode_image(by_id[tile_id].fused), expected_fusion(SHARP, BLURRED))
    assert plane.admission.streams_open == 0 and plane.sample("tsva_inflight_streams") == 0


def test_fuse_tiles_over_max_streams_is_resource_exhausted():
    context = FakeContext()

    async def test(service, plane):
        plane.admission.open_stream()  # the only stream allowed
        with pytest.raises(grpc.aio.AbortError):
            async for _ in service.FuseTiles(iter(()), context):
                pass

    run(test, max_streams=1, max_calls=1)
    assert (context.code, context.details) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                "1 FuseTiles streams open, the limit is 1; retry later")


def test_get_info_and_find_focus():
    survey = pb.FindFocusRequest(tile_id="z", planes=[encode_image(BLURRED), encode_image(SHARP)], z_um=[1.0, 2.0])

    async def test(service, plane):
        info = await service.GetInfo(pb.GetInfoRequest().SerializeToString(), FakeContext())
        focus = await service.FindFocus(survey.SerializeToString(), FakeContext())
        context = FakeContext()
        with pytest.raises(grpc.aio.AbortError):
            await service.FindFocus(pb.FindFocusRequest(tile_id="e").SerializeToString(), context)
        return info, focus, context

    info, focus, context = run(test, max_batch=4)
    assert (info.model_name, info.backend, info.patch_size, info.limits.max_batch_size) == ("fake", "fake", 0, 4)
    assert info.optics.pixel_size_um == 0.25 and list(info.optics.defocus_um) == [0.5, 1.0, 1.5]
    assert info.model_metadata["note"] == "test model" and info.limits.max_concurrent_streams == 256
    assert (focus.tile_id, focus.best_index, focus.best_z_um) == ("z", 1, 2.0)
    assert (context.code, context.details) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                "tile 'e': planes: empty (send the z-stack, one image per plane)")


def test_a_raw_shot_is_decoded_as_a_view_of_the_received_bytes():
    message = pb.FuseRequest.FromString(request())
    pair = translate.tile_pair(message)
    array = pair.shot_a.decode("shot_a")
    assert not array.flags.owndata and not array.flags.writeable  # np.frombuffer over the bytes: no copy
    assert (pair.position, pair.pixel_size_um, pair.output_encoding) == ((5, 6), None, None)
    assert translate.tile_pair(pb.FuseRequest.FromString(request(pixel_size_um=0.0))).pixel_size_um == 0.0
