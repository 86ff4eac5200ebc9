"""The gateway's API over real gRPC to a gateway process on loopback (tiny pointwise model:
x = clip(0.75 Y1 + 0.25 Y2), so every fused pixel is known): forms, every bad-input case of the
issue in both Fuse and FuseTiles, GetInfo, health, reflection and the metrics endpoint."""
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from skimage import data
from tsva.common.images import decode_image, encode_image
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.metrics import metric, read_metrics

SHARP = data.astronaut()[:150, :200]          # 200x150 RGB
SOFT = (SHARP // 2 + 60).astype(np.uint8)     # less contrast: lower Brenner


def expected(y1, y2):
    peak = np.iinfo(y1.dtype).max
    return np.clip(np.rint((0.75 * (y1 / peak) + 0.25 * (y2 / peak)) * peak), 0, peak)


@pytest.fixture(scope="module")
def stub(gateway):
    with gateway.channel() as channel:
        yield pb_grpc.VirtualAutofocusStub(channel)


def request(tile_id="t", a=SHARP, b=SOFT, encoding="raw", **kw):
    return pb.FuseRequest(tile_id=tile_id, slide_id="slide-1", position=pb.TilePosition(x=5, y=7),
                          shot_a=encode_image(a, encoding), shot_b=encode_image(b, encoding), **kw)


# Every form except 16-bit colour PNG, which is refused (case png_16bit_colour_out below).
FORMS = [(e, d, c) for e in ("raw", "png", "tiff") for d in (np.uint8, np.uint16) for c in (1, 3)
         if not (e == "png" and d == np.uint16 and c == 3)]


@pytest.mark.parametrize("encoding, dtype, channels", FORMS)
def test_fuse_forms(stub, encoding, dtype, channels):
    a = SHARP.astype(dtype) * (257 if dtype == np.uint16 else 1)
    b = SOFT.astype(dtype) * (257 if dtype == np.uint16 else 1)
    if channels == 1:
        a, b = a[:, :, 1:2].copy(), b[:, :, 1:2].copy()
    reply = stub.Fuse(request(a=a, b=b, encoding=encoding), timeout=60)
    assert reply.tile_id == "t" and reply.slide_id == "slide-1" and reply.position.x == 5
    assert reply.fused.encoding == encode_image(a, encoding).encoding  # answered in the request's form
    assert (reply.fused.width, reply.fused.height, reply.fused.channels) == (200, 150, channels)
    fused = decode_image(reply.fused)
    assert fused.dtype == dtype and fused.shape == a.shape
    assert np.abs(fused.astype(np.float64) - expected(a, b)).max() <= 1.0
    assert reply.timings.total_ms > 0 and reply.timings.inference_ms > 0


def test_output_encoding_override(stub):
    reply = stub.Fuse(request(output_encoding=pb.IMAGE_ENCODING_PNG), timeout=60)
    assert reply.fused.encoding == pb.IMAGE_ENCODING_PNG
    assert np.abs(decode_image(reply.fused) - expected(SHARP, SOFT)).max() <= 1.0


def test_blank_glass_tile(stub):
    blank = np.full((90, 120, 3), 230, np.uint8)
    reply = stub.Fuse(request(a=blank, b=blank), timeout=60)
    assert reply.brenner_a == 0.0 and reply.brenner_b == 0.0 and reply.y1_shot == pb.SHOT_A
    np.testing.assert_array_equal(decode_image(reply.fused), blank)


@pytest.mark.parametrize("size", [(1, 1), (3, 70), (70, 3), (64, 64), (65, 129)])
def test_any_tile_size(stub, size):
    h, w = size
    a, b = SHARP[:h, :w].copy(), SOFT[:h, :w].copy()
    fused = decode_image(stub.Fuse(request(a=a, b=b), timeout=60).fused)
    assert fused.shape == (h, w, 3)
    assert np.abs(fused - expected(a, b)).max() <= 1.0


def raw(data_=b"", **kw):
    fields = dict(encoding=pb.IMAGE_ENCODING_RAW, width=4, height=4, channels=3, pixel_type=pb.PIXEL_TYPE_UINT8)
    fields.update(kw)
    return pb.Image(data=data_ if data_ else b"\0" * (fields["width"] * fields["height"] * fields["channels"]),
                    **fields)


GOOD = encode_image(SHARP[:4, :4])
BAD_CASES = {
    "size_mismatch": (GOOD, encode_image(SHARP[:4, :5]), "shot_b: 5x4x3 uint8 does not match shot_a 4x4x3 uint8"),
    "channel_mismatch": (GOOD, encode_image(SHARP[:4, :4, :1]), "shot_b: 4x4x1 uint8 does not match shot_a"),
    "dtype_mismatch": (GOOD, encode_image(SHARP[:4, :4].astype(np.uint16)), "shot_b: 4x4x3 uint16 does not match"),
    "byte_length": (GOOD, raw(b"\0" * 47), "shot_b.data: 47 bytes, expected 48 for 4x4x3 uint8"),
    "bad_png": (pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=b"\x89PNG\r\n\x1a\nnot really"), GOOD,
                "shot_a.data: not a PNG file"),
    "truncated_png": (pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=encode_image(SHARP, "png").data[:500]), GOOD,
                      "shot_a.data: undecodable PNG"),
    "bad_tiff": (GOOD, pb.Image(encoding=pb.IMAGE_ENCODING_TIFF, data=b"II*\0\x08\0\0\0garbage"),
                 "shot_b.data: undecodable TIFF"),
    "zero_width": (raw(width=0), GOOD, "shot_a.width: must be > 0"),
    "zero_height": (GOOD, raw(height=0), "shot_b.height: must be > 0"),
    "oversized": (raw(width=5000, height=1, channels=1), raw(width=5000, height=1, channels=1),
                  "shot_a: size 5000x1 exceeds the limit 4096x4096"),
    "channels_2": (raw(channels=2), GOOD, "shot_a.channels: 2, expected 1 or 3"),
    "unknown_encoding": (pb.Image(encoding=9, data=b"x"), GOOD, "shot_a.encoding: unknown value 9"),
    "unset_encoding": (GOOD, pb.Image(data=b"x"), "shot_b.encoding: not set"),
    "unknown_pixel_type": (raw(pixel_type=5), GOOD, "shot_a.pixel_type: unknown value 5"),
    "missing_shot": (GOOD, None, "shot_b: missing"),
}


def bad_request(name):
    a, b, _ = BAD_CASES[name]
    req = pb.FuseRequest(tile_id=f"bad-{name}", shot_a=a)
    if b is not None:
        req.shot_b.CopyFrom(b)
    return req


EXTRA_BAD = {
    "unknown_output_encoding": (pb.FuseRequest(tile_id="bad-unknown_output_encoding", shot_a=GOOD, shot_b=GOOD,
                                               output_encoding=17), "output_encoding: unknown value 17"),
    "nan_defocus": (pb.FuseRequest(tile_id="bad-nan_defocus", shot_a=GOOD, shot_b=GOOD, defocus_b_um=float("nan")),
                    "defocus_b_um: nan is not a finite number"),
    "png_16bit_colour_out": (pb.FuseRequest(tile_id="bad-png_16bit_colour_out",
                                            shot_a=encode_image(SHARP[:4, :4].astype(np.uint16)),
                                            shot_b=encode_image(SHARP[:4, :4].astype(np.uint16)),
                                            output_encoding=pb.IMAGE_ENCODING_PNG), "output_encoding: PNG cannot"),
}
ALL_BAD = {**{k: (bad_request(k), v[2]) for k, v in BAD_CASES.items()}, **EXTRA_BAD}


@pytest.mark.parametrize("name", sorted(ALL_BAD))
def test_unary_bad_input_is_invalid_argument(stub, name):
    req, message = ALL_BAD[name]
    with pytest.raises(grpc.RpcError) as info:
        stub.Fuse(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(f"tile 'bad-{name}': {message}"), info.value.details()


def test_stream_answers_every_tile_once_bad_ones_with_errors(stub, gateway):
    invalid_before = metric(gateway.metrics_url, "tsva_tiles_total", outcome="invalid_argument")
    good = [request(tile_id=f"good-{i}", a=SHARP[: 40 + i, : 60 + i].copy(), b=SOFT[: 40 + i, : 60 + i].copy())
            for i in range(6)]
    bad = [req for req, _ in ALL_BAD.values()]
    mixed = [x for pair in zip(good, bad) for x in pair] + bad[len(good):]
    replies = list(stub.FuseTiles(iter(mixed), timeout=120))
    ids = [r.tile_id for r in replies]
    assert sorted(ids) == sorted(r.tile_id for r in mixed)  # exactly one answer per request
    by_id = {r.tile_id: r for r in replies}
    for name, (_, message) in ALL_BAD.items():
        err = by_id[f"bad-{name}"].error
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and err.status == "INVALID_ARGUMENT"
        assert err.message.startswith(f"tile 'bad-{name}': {message}")
        assert not by_id[f"bad-{name}"].HasField("fused")
    for req in good:
        reply = by_id[req.tile_id]
        assert not reply.HasField("error")
        assert np.abs(decode_image(reply.fused) - expected(decode_image(req.shot_a), decode_image(req.shot_b))).max() <= 1
    assert metric(gateway.metrics_url, "tsva_tiles_total", outcome="invalid_argument") - invalid_before == len(bad)


def test_get_info(stub):
    info = stub.GetInfo(pb.GetInfoRequest(), timeout=10)
    assert info.backend == "embedded" and info.model_name == "tiny" and info.model_version == "7"
    assert info.optics.numerical_aperture == 0.75 and list(info.optics.defocus_um) == [0.5, 1.0, 1.5]
    assert list(info.optics.wavelengths_um) == [0.61, 0.53, 0.47]
    assert info.model_metadata["note"] == "test model"
    assert info.patch_size == 64 and info.patch_overlap == 16 and info.limits.max_batch_size == 8
    assert info.limits.max_message_bytes >= 2 * 4096 * 4096 * 3 * 2


def test_health_and_reflection(gateway):
    with gateway.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tsva.v1.VirtualAutofocus"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                    timeout=5))
        names = {s.name for s in replies[0].list_services_response.service}
        assert {"tsva.v1.VirtualAutofocus", "grpc.health.v1.Health"} <= names


def test_metrics_endpoint(stub, gateway):
    stub.Fuse(request(tile_id="m", a=SOFT, b=SHARP), timeout=60)  # shot_b sharper: a swap
    samples = read_metrics(gateway.metrics_url)
    names = {name for name, _ in samples}
    for name in ("tsva_tiles_total", "tsva_tile_latency_seconds_bucket", "tsva_backend_batch_size_bucket",
                 "tsva_backend_latency_seconds_bucket", "tsva_queue_depth", "tsva_inflight_streams",
                 "tsva_inflight_tiles", "tsva_fused_pixels_total", "tsva_shot_order_swaps_total", "tsva_backend_up"):
        assert name in names, name
    assert samples[("tsva_backend_up", ())] == 1.0
    assert samples[("tsva_shot_order_swaps_total", ())] >= 1
    assert samples[("tsva_fused_pixels_total", ())] >= 200 * 150
    assert samples[("tsva_tiles_total", (("outcome", "ok"),))] >= 1
    assert samples[("tsva_queue_depth", ())] == 0.0


def test_slide_ids_and_pixels_stay_out_of_logs(stub, gateway):
    stub.Fuse(request(tile_id="log-check"), timeout=60)
    with pytest.raises(grpc.RpcError):
        stub.Fuse(bad_request("byte_length"), timeout=30)
    assert "slide-1" not in gateway.logs()


@pytest.mark.parametrize("compression", ["lzw", "packbits", "zlib"])
def test_compressed_tiff_shots(stub, compression):
    import io

    import tifffile

    def tiff(array):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, array, compression=compression, photometric="rgb")
        return pb.Image(encoding=pb.IMAGE_ENCODING_TIFF, data=buffer.getvalue())

    reply = stub.Fuse(pb.FuseRequest(tile_id="lzw", shot_a=tiff(SHARP), shot_b=tiff(SOFT)), timeout=60)
    assert reply.fused.encoding == pb.IMAGE_ENCODING_TIFF
    assert np.abs(decode_image(reply.fused) - expected(SHARP, SOFT)).max() <= 1.0
