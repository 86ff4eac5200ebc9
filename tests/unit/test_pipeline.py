"""Pipeline + MicroBatcher in process, on the fake backend (tests.support.fake_backend: numpy
x = clip(0.75*y1 + 0.25*y2) in place of ONNX Runtime/Triton, which tests/e2e cover): Brenner
order, patches and whole tiles, the model's size multiple, bad input named by field, a backend
error failing exactly the tiles of its batch, the dD input, GetInfo and FindFocus."""
import asyncio

import numpy as np
import pytest
from tsva.common.brenner import brenner
from tsva.common.contract import FLOAT32_CONTRACT, INPUT_DD, ModelContract
from tsva.common.images import ImageError
from tsva.server.backends.base import BackendUnavailable
from tsva.server.config import Config, ConfigError
from tsva.server.errors import InvalidRequest, status_of
from tsva.server.pipeline import patch_alignment
from tsva.server.tiles import ArrayShot, FocusSurvey, TilePair

from tests.support.data_plane import data_plane
from tests.support.fake_backend import FakeBackend
from tests.support.models import TINY_METADATA
from tests.support.tiles import assert_close, expected_fusion, sharp_and_blurred

SHARP, BLURRED = sharp_and_blurred()  # 96 x 120 x 3 uint8


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


def pair(a=SHARP, b=BLURRED, **fields):
    return TilePair(ArrayShot(a), ArrayShot(b), **fields)


@pytest.mark.parametrize("patch_size", ["64", "tile"])
def test_fuses_with_the_sharper_shot_as_y1(patch_size):
    async def main():
        async with data_plane(patch_size=patch_size, patch_overlap=16) as plane:
            kept = await plane.pipeline.fuse(pair(tile_id="t1", slide_id="s", position=(3, 4)))
            swapped = await plane.pipeline.fuse(pair(BLURRED, SHARP, tile_id="t2"))
            return plane, kept, swapped

    plane, kept, swapped = run(main())
    expected = expected_fusion(SHARP, BLURRED)
    assert_close(kept.image, expected)
    assert_close(swapped.image, expected)  # same Y1 whichever shot it arrived as
    assert (kept.y1_shot, swapped.y1_shot) == ("a", "b")
    assert kept.brenner_a > kept.brenner_b and swapped.brenner_b > swapped.brenner_a
    assert (kept.tile_id, kept.slide_id, kept.position, kept.encoding) == ("t1", "s", (3, 4), "raw")
    assert kept.timings.total_ms >= kept.timings.decode_ms > 0
    assert plane.sample("tsva_shot_order_swaps_total") == 1
    assert plane.sample("tsva_fused_pixels_total") == 2 * 96 * 120
    assert plane.sample("tsva_inflight_tiles") == 0
    shapes = {shape for shape, _ in plane.backend.batches}
    if patch_size == "tile":  # one item per tile, padded to the contract's multiple of 16
        assert shapes == {(1, 3, 96, 128)}
    else:  # 64-px patches: 2 x 3 of them per tile
        assert {s[1:] for s in shapes} == {(3, 64, 64)} and sum(s[0] for s, _ in plane.backend.batches) == 12


def test_whole_tile_follows_the_models_size_multiple():
    contract = ModelContract(np.dtype(np.float32), "NCHW", size_multiple=32, stride=32)

    async def main():
        async with data_plane(FakeBackend(contract), patch_size="tile") as plane:
            return plane, await plane.pipeline.fuse(pair())

    plane, fused = run(main())
    assert plane.backend.batches == [((1, 3, 96, 128), np.dtype(np.float32))]  # 120 -> 128, 96 stays
    assert_close(fused.image, expected_fusion(SHARP, BLURRED))


def test_lone_tile_reaches_a_pixel_typed_backend_as_a_view():
    """A RAW-sized RGB tile to a model that pads in its graph goes as it is: no copy."""
    contract = ModelContract(np.dtype(np.uint8), "NHWC", size_multiple=1, min_size=16)
    seen = []

    class Recording(FakeBackend):
        async def infer(self, y1, y2, timeout_s=None, dd=None):
            seen.append(y1)
            return await super().infer(y1, y2, timeout_s, dd)

    async def main():
        async with data_plane(Recording(contract), patch_size="tile") as plane:
            return await plane.pipeline.fuse(pair())

    fused = run(main())
    assert np.shares_memory(seen[0], SHARP)
    assert_close(fused.image, expected_fusion(SHARP, BLURRED))


def test_patch_origins_follow_the_models_stride_unless_told():
    config = Config(patch_size="224", patch_overlap=64)
    stride_32 = ModelContract(np.dtype(np.float32), "NCHW", size_multiple=32, stride=32)
    assert patch_alignment(config, FLOAT32_CONTRACT, 224) == 16
    assert patch_alignment(config, stride_32, 224) == 32
    assert patch_alignment(Config(patch_size="224", patch_align=16), stride_32, 224) == 16
    with pytest.raises(ConfigError, match="--patch-align: 64 .* must divide --patch-size 224"):
        patch_alignment(config, ModelContract(np.dtype(np.float32), "NCHW", size_multiple=1, stride=64), 224)
    with pytest.raises(ConfigError, match="--patch-size: 224 is not a multiple of the model's size multiple 64"):
        patch_alignment(config, ModelContract(np.dtype(np.float32), "NCHW", size_multiple=64, stride=64), 224)


@pytest.mark.parametrize("bad, message", [
    (pair(SHARP, SHARP[:50]), "shot_b: 120x50x3 uint8 does not match shot_a 120x96x3 uint8 "
                                    "(size, channels and pixel type must agree)"),
    (pair(defocus_a_um=float("nan")), "defocus_a_um: nan is not a finite number"),
    (pair(pixel_size_um=0.4), "pixel_size_um: 0.4 um/px is more than 10% from the model's 0.25 um/px"),
    (pair(pixel_size_um=-1.0), "pixel_size_um: -1.0 is not a positive number"),
    (pair(SHARP.astype(np.uint16), BLURRED.astype(np.uint16), output_encoding="png"),
     "output_encoding: PNG cannot hold 16-bit colour here; ask for TIFF or RAW"),
    (pair(SHARP[:, :, :2]), "shot_a.data: array of shape (96, 120, 2), expected 1 or 3 channels"),
    (pair(np.zeros((5000, 8, 3), np.uint8)), "shot_a: size 8x5000 exceeds the limit 4096x4096"),
])
def test_bad_input_names_the_field_and_runs_nothing(bad, message):
    async def main():
        async with data_plane(FakeBackend(metadata=TINY_METADATA)) as plane:
            with pytest.raises((InvalidRequest, ImageError)) as caught:
                await plane.pipeline.fuse(bad)
            return plane, caught.value

    plane, error = run(main())
    assert str(error) == message
    assert status_of(error, "t9")[1] == f"tile 't9': {message}"  # the servicer adds the tile
    assert plane.backend.batches == [] and plane.sample("tsva_inflight_tiles") == 0


def test_backend_error_fails_exactly_the_tiles_of_that_batch():
    """Four tiles, batches of two: the batch carrying the white tile fails both its tiles with
    UNAVAILABLE; the other batch is fused; health is told once per failed batch."""
    white = np.full_like(SHARP, 255)
    tiles = [SHARP, white, SHARP // 2, SHARP // 3]
    backend = FakeBackend()
    backend.fail_on_white = True
    failures = []

    async def main():
        async with data_plane(backend, patch_size="tile", max_batch=2, max_delay_s=2.0,
                              on_backend_error=failures.append) as plane:
            results = await asyncio.gather(*(plane.pipeline.fuse(pair(t, BLURRED, tile_id=str(i)))
                                             for i, t in enumerate(tiles)), return_exceptions=True)
            return plane, results

    plane, results = run(main())
    failed = [i for i, r in enumerate(results) if isinstance(r, BackendUnavailable)]
    assert 1 in failed and len(failed) == 2
    for i, result in enumerate(results):
        if i not in failed:
            y1, y2 = (tiles[i], BLURRED) if brenner(tiles[i]) >= brenner(BLURRED) else (BLURRED, tiles[i])
            assert_close(result.image, expected_fusion(y1, y2))
    assert [shape[0] for shape, _ in plane.backend.batches] == [2, 2]
    assert len(failures) == 1 and plane.sample("tsva_backend_errors_total") == 1


def test_a_conditioned_model_gets_the_pairs_dd_clamped_to_the_trained_values():
    contract = ModelContract(np.dtype(np.float32), "NCHW", defocus_input=INPUT_DD)
    backend = FakeBackend(contract, metadata=TINY_METADATA)  # trained for dD 0.5, 1, 1.5

    async def main():
        async with data_plane(backend, patch_size="tile") as plane:
            await plane.pipeline.fuse(pair(defocus_a_um=-0.8, defocus_b_um=0.8))
            await plane.pipeline.fuse(pair(defocus_a_um=-4.0, defocus_b_um=4.0))

    run(main())
    assert [float(dd[0, 0]) for dd in backend.dd] == [pytest.approx(0.8), 1.5]


def test_info_describes_model_plan_and_limits():
    async def main():
        async with data_plane(FakeBackend(metadata=TINY_METADATA), patch_size="64", patch_overlap=16,
                              max_batch=4, max_streams=9) as plane:
            return plane.pipeline.info()

    info = run(main())
    assert (info.model_name, info.model_version, info.backend) == ("fake", "3", "fake")
    assert (info.patch_size, info.patch_overlap, info.limits.max_batch_size) == (64, 16, 4)
    assert info.limits.max_concurrent_streams == 9 and info.limits.max_tile_width == 4096
    assert info.optics.numerical_aperture == 0.75 and info.optics.wavelengths_um == (0.61, 0.53, 0.47)
    assert info.optics.defocus_um == (0.5, 1.0, 1.5) and info.model_metadata["note"] == "test model"


def test_find_focus_picks_the_sharpest_plane_and_names_bad_fields():
    from scipy.ndimage import gaussian_filter

    planes = [ArrayShot(np.round(gaussian_filter(SHARP.astype(float), (s, s, 0))).astype(np.uint8))
              for s in (3.0, 1.0, 0.0, 1.5)]

    async def main():
        async with data_plane() as plane:
            result = await plane.pipeline.find_focus(FocusSurvey(planes, [0.0, 0.5, 1.0, 1.5], tile_id="z"))
            errors = []
            for survey in (FocusSurvey([], []), FocusSurvey(planes, [0.0, 1.0]),
                           FocusSurvey(planes, [0.0, 1.0, 0.5, 2.0])):
                with pytest.raises(InvalidRequest) as caught:
                    await plane.pipeline.find_focus(survey)
                errors.append(str(caught.value))
            return result, errors

    result, errors = run(main())
    assert (result.tile_id, result.best_index, result.best_z_um) == ("z", 2, 1.0)
    assert result.brenner[2] == max(result.brenner) and 0.5 < result.refined_z_um < 1.5
    assert errors == ["planes: empty (send the z-stack, one image per plane)",
                      "z_um: 2 values for 4 planes (one z per plane)",
                      "z_um: must be strictly increasing or strictly decreasing"]


def test_auto_plan_on_cpu_sends_small_tiles_whole_and_large_ones_as_224_px_patches(monkeypatch):
    """`--patch-size auto` on a CPU backend: whole tiles up to CPU_WHOLE_TILE_MAX_PIXELS, larger
    tiles as 224-px patches, so memory does not grow with the tile (the limit lowered here so the
    test tile is "large")."""
    import tsva.server.pipeline as pipeline_module

    async def main(limit):
        monkeypatch.setattr(pipeline_module, "CPU_WHOLE_TILE_MAX_PIXELS", limit)
        async with data_plane(patch_size="auto") as plane:
            fused = await plane.pipeline.fuse(pair(tile_id="t"))
            return {shape[1:] for shape, _ in plane.backend.batches}, fused

    small, fused_whole = run(main(96 * 120))
    large, fused_patches = run(main(96 * 120 - 1))
    assert small == {(3, 96, 128)} and large == {(3, 224, 224)}
    for fused in (fused_whole, fused_patches):
        assert_close(fused.image, expected_fusion(SHARP, BLURRED))
