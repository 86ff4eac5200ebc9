"""The asyncio SDK against a real gateway process on loopback (tiny pointwise model)."""
import asyncio

import grpc
import numpy as np
import pytest
from tsva.client import AsyncClient, FusePair, TsvaError

from tests.support.tiles import assert_close, expected_fusion, sharp_and_blurred


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


def test_unary_calls(gateway):
    async def main():
        sharp, blurred = sharp_and_blurred()
        async with AsyncClient(gateway.address, timeout=60) as client:
            await client.wait_until_serving(timeout=5)
            result = await client.fuse(blurred, sharp, tile_id="a1")
            assert result.tile_id == "a1" and result.y1_shot == "B"
            assert_close(result.image, expected_fusion(sharp, blurred))
            info = await client.info()
            assert info.model_name == "tiny" and await client.health() == "SERVING"
            focus = await client.find_focus([blurred, sharp, blurred], [-1.0, 0.0, 1.0])
            assert focus.best_index == 1 and focus.refined_z_um == pytest.approx(0.0, abs=1e-6)
            with pytest.raises(TsvaError) as info_:
                await client.fuse(sharp, blurred[:, :30], tile_id="narrow")
            assert info_.value.code == grpc.StatusCode.INVALID_ARGUMENT and "narrow" in info_.value.message

    run(main())


def test_stream_from_an_async_source_with_a_bad_tile(gateway):
    window = 3
    tiles = {f"t{i}": sharp_and_blurred(32 + 16 * (i % 3), 64) for i in range(9)}
    taken, results = [], []

    async def pairs():
        for tile_id, (sharp, blurred) in tiles.items():
            assert len(taken) - len(results) < window
            taken.append(tile_id)
            if tile_id == "t4":
                yield FusePair(sharp, blurred[:20], tile_id=tile_id)  # sizes differ
            else:
                yield FusePair(sharp, blurred, tile_id=tile_id)
            await asyncio.sleep(0)

    async def main():
        async with AsyncClient(gateway.address) as client:
            async for result in client.fuse_stream(pairs(), window=window):
                results.append(result)

    run(main())
    assert sorted(r.tile_id for r in results) == sorted(tiles)
    for r in results:
        if r.tile_id == "t4":
            assert r.error.code == grpc.StatusCode.INVALID_ARGUMENT and "'t4'" in r.error.message
        else:
            assert r.ok, r.error
            assert_close(r.image, expected_fusion(*tiles[r.tile_id]))


def test_stream_from_a_plain_list(gateway):
    sharp, blurred = sharp_and_blurred(40, 40)

    async def main():
        async with AsyncClient(gateway.address) as client:
            return [r async for r in client.fuse_stream([(sharp, blurred)] * 5 + [(sharp, np.ones((2, 2), np.int8))],
                                                        window=2, output_encoding="png")]

    results = sorted(run(main()), key=lambda r: r.index)
    assert [r.ok for r in results] == [True] * 5 + [False]
    assert all(r.fused.encoding == 2 for r in results[:5])  # PNG, as asked for the whole stream
    assert "int8" in results[5].error.message
