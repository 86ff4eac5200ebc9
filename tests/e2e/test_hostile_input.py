"""Hostile files and messages over real gRPC to a gateway process on loopback (tiny model): each
crafted shot of tests/support/hostile_corpus.py (hidden-header PNG bombs, 16-bit PNG behind a fake header,
TIFF samples/depth/tile bombs, multi-page, garbage) and each wire case (not protobuf, a non-UTF-8
tile_id, ids beyond the limit) gets INVALID_ARGUMENT naming the field and the tile, through Fuse
and inside one FuseTiles stream that goes on to fuse the good tiles around them. Memory figures
of the same corpus are in benchmarks/hostile_input.py, not here."""
import grpc
import numpy as np
import pytest
from tsva.common.images import decode_image, encode_image
from tsva.server.wire import MAX_ID_BYTES
from tsva.v1 import tsva_pb2 as pb

from tests.support import hostile_corpus as corpus
from tests.support.metrics import metric

pytestmark = pytest.mark.slow

FUSE, FUSE_TILES = "/tsva.v1.VirtualAutofocus/Fuse", "/tsva.v1.VirtualAutofocus/FuseTiles"
MiB = 2 ** 20


@pytest.fixture(scope="module")
def methods(gateway):
    """Fuse and FuseTiles taking bytes, so that messages protobuf would refuse can be sent."""
    with gateway.channel() as channel:
        yield (channel.unary_unary(FUSE, request_serializer=None, response_deserializer=pb.FuseResponse.FromString),
               channel.stream_stream(FUSE_TILES, request_serializer=None,
                                     response_deserializer=pb.FuseResponse.FromString))


# name -> (request bytes, tile_id the answer names, text the message contains)
WIRE = {
    "unparseable": (corpus.UNPARSEABLE, "", "request: not a valid tsva.v1.FuseRequest message"),
    "non_utf8_tile_id": (corpus.non_utf8_tile_id(), "tile-\ufffd\ufffd", "tile_id: not valid UTF-8"),
    "long_tile_id_bad_shot": (pb.FuseRequest(tile_id="x" * MiB, shot_a=corpus.good_shot()).SerializeToString(),
                              "x" * MiB, f"tile_id: {MiB} bytes, the limit is {MAX_ID_BYTES}"),
    "long_slide_id": (pb.FuseRequest(tile_id="long-slide", slide_id="s" * 300, shot_a=corpus.good_shot(),
                                     shot_b=corpus.good_shot()).SerializeToString(),
                      "long-slide", f"slide_id: 300 bytes, the limit is {MAX_ID_BYTES}"),
    "bad_nested_image": (pb.FuseRequest(tile_id="nested", shot_a=corpus.good_shot()).SerializeToString()
                         + b"\x2a\x03\x0a\xff\xff", "nested", "shot_b: not a valid tsva.v1.Image message"),
}


@pytest.mark.parametrize("name", sorted(corpus.CASES))
def test_hostile_shot_is_invalid_argument(methods, name):
    fuse, _ = methods
    with pytest.raises(grpc.RpcError) as info:
        fuse(corpus.request(name).SerializeToString(), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    details = info.value.details()
    assert details.startswith(f"tile 'hostile-{name}': shot_b"), details
    assert corpus.CASES[name][1] in details, details


@pytest.mark.parametrize("name", sorted(WIRE))
def test_bad_message_is_invalid_argument(methods, name):
    fuse, _ = methods
    raw, tile_id, text = WIRE[name]
    with pytest.raises(grpc.RpcError) as info:
        fuse(raw, timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    details = info.value.details()
    assert text in details and len(details) < 1024, details[:300]
    assert details.startswith(f"tile {tile_id[:64]!r}"), details[:300]


def test_one_stream_answers_every_hostile_message_and_goes_on(methods, gateway):
    _, stream = methods
    invalid_before = metric(gateway.metrics_url, "tsva_tiles_total", outcome="invalid_argument")
    good = [pb.FuseRequest(tile_id=f"good-{i}", shot_a=encode_image(corpus.GOOD),
                           shot_b=encode_image(corpus.GOOD // 2)) for i in range(4)]
    bad = [corpus.request(name).SerializeToString() for name in sorted(corpus.CASES)]
    bad += [raw for raw, _, _ in WIRE.values()]
    messages = []
    for i, raw in enumerate(bad):
        messages.append(raw)
        if i % 4 == 0 and good:
            messages.append(good.pop().SerializeToString())
    replies = list(stream(iter(messages), timeout=120))
    assert len(replies) == len(messages)  # one answer per message; the stream ended normally
    fused = [r for r in replies if not r.HasField("error")]
    errors = [r for r in replies if r.HasField("error")]
    assert sorted(r.tile_id for r in fused) == [f"good-{i}" for i in range(4)]
    for reply in fused:
        assert decode_image(reply.fused).shape == corpus.GOOD.shape
    assert len(errors) == len(bad)
    for reply in errors:
        assert reply.error.status == "INVALID_ARGUMENT", reply.error.message
        assert reply.error.message.startswith(f"tile {reply.tile_id[:64]!r}"), reply.error.message[:200]
        assert len(reply.error.message) < 1024, reply.error.message[:200]
    names = {r.tile_id for r in errors}
    assert {f"hostile-{name}" for name in corpus.CASES} <= names
    assert "x" * MiB in names  # an id over the limit is echoed whole, so the client can match the reply
    assert "tile-\ufffd\ufffd" in names and "nested" in names
    assert metric(gateway.metrics_url, "tsva_tiles_total", outcome="invalid_argument") - invalid_before == len(bad)


def test_find_focus_unparseable_is_invalid_argument(gateway):
    with gateway.channel() as channel:
        focus = channel.unary_unary("/tsva.v1.VirtualAutofocus/FindFocus", request_serializer=None,
                                    response_deserializer=pb.FindFocusResponse.FromString)
        with pytest.raises(grpc.RpcError) as info:
            focus(corpus.UNPARSEABLE, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid tsva.v1.FindFocusRequest" in info.value.details()


def test_client_files_do_not_write_tifffile_lines_into_the_log(methods, gateway):
    fuse, _ = methods
    for name in ("tiff_garbage", "tiff_empty"):
        with pytest.raises(grpc.RpcError):
            fuse(corpus.request(name).SerializeToString(), timeout=30)
    assert "tifffile" not in gateway.logs()


def test_good_16bit_grey_png_still_fuses(methods):
    """The header checks refuse only what they must: a plain 16-bit grey PNG fuses."""
    fuse, _ = methods
    shot = (corpus.GOOD[:, :, :1].astype(np.uint16) * 257)
    reply = fuse(pb.FuseRequest(tile_id="grey16", shot_a=encode_image(shot, "png"),
                                shot_b=encode_image(shot // 2, "png")).SerializeToString(), timeout=60)
    assert decode_image(reply.fused).dtype == np.uint16
