"""The synchronous SDK against a real gateway process on loopback (tiny pointwise model from
conftest: x = clip(0.75*Y1 + 0.25*Y2), so every fused pixel can be checked)."""
import os
import signal
import time

import grpc
import numpy as np
import pytest
from PIL import Image as PILImage
from skimage import data, filters
from tsva.client import Client, FusePair, TsvaError
from tsva.common import images
from tsva.v1 import tsva_pb2 as pb

from tests.support.gateway import start_gateway
from tests.support.tiles import assert_close, expected_fusion, sharp_and_blurred


@pytest.fixture(scope="module")
def client(gateway):
    with Client(gateway.address, timeout=60) as c:
        yield c


def test_fuse_numpy_in_numpy_out_with_the_sharper_shot_as_y1(client):
    sharp, blurred = sharp_and_blurred()
    result = client.fuse(blurred, sharp, tile_id="t1", slide_id="s1", position=(2448, 1024),
                         defocus_a_um=-1.0, defocus_b_um=1.0)
    assert (result.tile_id, result.slide_id, result.position) == ("t1", "s1", (2448, 1024))
    assert result.y1_shot == "B" and result.brenner_b > result.brenner_a > 0
    assert result.fused.encoding == pb.IMAGE_ENCODING_RAW  # the form of the request
    assert_close(result.image, expected_fusion(sharp, blurred))
    assert result.timings.total_ms > 0 and result.timings.round_trip_ms >= result.timings.total_ms * 0.5
    swapped = client.fuse(sharp, blurred)
    assert swapped.y1_shot == "A"
    assert_close(swapped.image, expected_fusion(sharp, blurred))


@pytest.mark.parametrize("dtype, grey", [(np.uint16, True), (np.uint16, False), (np.uint8, True)])
def test_raw_round_trips_keep_pixel_type_and_channels(client, dtype, grey):
    sharp, blurred = sharp_and_blurred(64, 80, dtype=dtype, grey=grey)
    result = client.fuse(sharp, blurred)
    assert result.image.shape == (64, 80, 1 if grey else 3) and result.image.dtype == dtype
    assert_close(result.image, expected_fusion(sharp, blurred), tolerance=1 if dtype == np.uint8 else 2)


def test_png_and_tiff_files_round_trip(client, tmp_path):
    sharp, blurred = sharp_and_blurred()
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    PILImage.fromarray(sharp).save(a)
    PILImage.fromarray(blurred).save(b)
    result = client.fuse(a, b)
    assert result.fused.encoding == pb.IMAGE_ENCODING_PNG  # same form as the request
    assert_close(result.image, expected_fusion(sharp, blurred))
    saved = result.save(tmp_path / "out.png")
    assert saved.read_bytes() == result.fused.data

    sharp16, blurred16 = sharp_and_blurred(dtype=np.uint16)
    tiff_a = images.encode_image(sharp16, "tiff").data  # bytes in, TIFF out
    result16 = client.fuse(tiff_a, images.encode_image(blurred16, "tiff").data)
    assert result16.fused.encoding == pb.IMAGE_ENCODING_TIFF
    assert_close(result16.image, expected_fusion(sharp16, blurred16), tolerance=2)
    # Asking for another form than the request's.
    as_tiff = client.fuse(a, b, output_encoding="tiff")
    assert as_tiff.fused.encoding == pb.IMAGE_ENCODING_TIFF
    np.testing.assert_array_equal(as_tiff.image, result.image)


def test_unary_bad_input_raises_tsva_error_naming_field_and_tile(client):
    sharp, blurred = sharp_and_blurred()
    with pytest.raises(TsvaError) as info:
        client.fuse(sharp, blurred[:50], tile_id="odd-one")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "odd-one" in info.value.message and "shot_b" in info.value.message


def test_stream_answers_every_tile_once_within_the_window(client):
    """Tiles of different sizes (so a result can only fit its own request), window 3."""
    window, sizes = 3, [(32 + 16 * (i % 5), 48 + 8 * i) for i in range(14)]
    tiles = {f"tile-{i}": sharp_and_blurred(h, w) for i, (h, w) in enumerate(sizes)}
    taken, results = [], []

    def pairs():
        for tile_id, (sharp, blurred) in tiles.items():
            # The window counts tiles taken from here whose results the caller has not yet had.
            assert len(taken) - len(results) < window
            taken.append(tile_id)
            yield FusePair(sharp, blurred, tile_id=tile_id, slide_id="slide-9")

    for result in client.fuse_stream(pairs(), window=window):
        results.append(result)
    assert sorted(r.tile_id for r in results) == sorted(tiles)
    for r in results:
        assert r.ok, r.error
        sharp, blurred = tiles[r.tile_id]
        assert r.slide_id == "slide-9" and r.index == int(r.tile_id.split("-")[1])
        assert_close(r.image, expected_fusion(sharp, blurred))


def test_bad_tiles_in_the_middle_of_a_stream_fail_alone(client):
    sharp, blurred = sharp_and_blurred(48, 64)
    pairs = [(sharp, blurred)] * 3 + [
        (sharp, blurred[:, :40]),                                        # server: sizes differ
        (sharp, np.zeros((48, 64), np.float32)),                         # client: not uint8/uint16
        (b"\x89PNG\r\n\x1a\n truncated", blurred),                       # server: undecodable PNG
        FusePair(sharp, blurred, output_encoding="jpeg"),                # client: unknown encoding
    ] + [(sharp, blurred)] * 3
    results = sorted(client.fuse_stream(pairs, window=4), key=lambda r: r.index)
    assert [r.index for r in results] == list(range(len(pairs)))
    failed = {r.index: r.error for r in results if not r.ok}
    assert sorted(failed) == [3, 4, 5, 6]
    assert all(e.code == grpc.StatusCode.INVALID_ARGUMENT for e in failed.values())
    assert "shot_b" in failed[3].message and "'3'" in failed[3].message
    assert "shot_b" in failed[4].message and "float32" in failed[4].message
    assert "shot_a" in failed[5].message
    assert "output_encoding" in failed[6].message
    for r in results:
        if r.ok:
            assert_close(r.image, expected_fusion(sharp, blurred))


def test_focus_finds_the_plane_and_refines_between_steps(client):
    """A z-stack blurred with sigma growing away from a known focus at z0 = 0.2 um (planes every 0.5 um)."""
    tissue = data.camera()[128:256, 128:288]
    z = np.arange(-2.0, 2.01, 0.5)
    z0 = 0.2
    stack = [np.round(filters.gaussian(tissue, sigma=2.0 * abs(zi - z0), preserve_range=True)).astype(np.uint8)
             for zi in z]
    result = client.find_focus(stack, z, tile_id="first-tile")
    assert result.tile_id == "first-tile"
    assert result.best_index == int(np.argmin(np.abs(z - z0))) == 4 and result.best_z_um == 0.0
    assert 0.0 < result.refined_z_um < 0.5  # pulled towards 0.2, between the planes
    assert len(result.brenner) == len(z) and max(result.brenner) == result.brenner[4]


def test_info_and_health(client):
    info = client.info()
    assert (info.model_name, info.model_version, info.backend) == ("tiny", "7", "embedded")
    assert info.optics.numerical_aperture == 0.75 and info.optics.defocus_um == [0.5, 1.0, 1.5]
    assert info.optics.wavelengths_um == [0.61, 0.53, 0.47]
    assert info.patch_size == 64 and info.patch_overlap == 16 and info.limits.max_batch_size == 8
    assert info.model_metadata["note"] == "test model"
    assert client.health() == "SERVING"
    client.wait_until_serving(timeout=5)


def test_a_broken_stream_answers_the_tiles_in_flight_then_raises(tiny_model):
    """The gateway is killed (SIGKILL) mid-stream: every tile taken gets one result, the ones in
    flight an UNAVAILABLE error, and then TsvaError is raised."""
    sharp, blurred = sharp_and_blurred(48, 64)
    with start_gateway(tiny_model, patch_size=64, patch_overlap=16) as gw, Client(gw.address) as client:
        taken, results = [], []

        def endless_pairs():
            i = 0
            while True:
                if i == 6:
                    while len(results) < 2:  # some answered before the kill
                        time.sleep(0.01)
                    os.kill(gw.process.pid, signal.SIGKILL)
                taken.append(str(i))
                yield str(i), sharp, blurred
                i += 1

        with pytest.raises(TsvaError) as info:
            for result in client.fuse_stream(endless_pairs(), window=4):
                results.append(result)
        assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL)
        assert sorted(r.tile_id for r in results) == sorted(taken)
        assert any(not r.ok for r in results) and sum(r.ok for r in results) >= 2
