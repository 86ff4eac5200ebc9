"""tsva.server.admission: --max-streams refuses at once, --stream-window and --max-inflight-tiles
make the caller wait, and every place taken is given back exactly once."""
import asyncio

import grpc
import pytest
from tsva.server.admission import Admission
from tsva.server.config import Config
from tsva.server.errors import Overloaded, status_of


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


async def blocked(awaitable, wait_s=0.05) -> bool:
    """True when `awaitable` is still waiting after wait_s (it is then cancelled)."""
    task = asyncio.ensure_future(awaitable)
    await asyncio.sleep(wait_s)
    if task.done():
        return False
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return True


def test_from_config_takes_the_three_limits():
    admission = Admission.from_config(Config(max_streams=3, stream_window=4, max_inflight_tiles=5))
    assert (admission.max_streams, admission.stream_window, admission.max_inflight_tiles) == (3, 4, 5)


def test_one_stream_over_max_streams_is_refused_with_resource_exhausted():
    admission = Admission(max_streams=2, stream_window=1, max_inflight_tiles=1)
    streams = [admission.open_stream(), admission.open_stream()]
    with pytest.raises(Overloaded) as caught:
        admission.open_stream()
    assert status_of(caught.value) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       "2 FuseTiles streams open, the limit is 2; retry later")
    streams[0].close()
    streams[0].close()  # idempotent: gives back one place, not two
    assert admission.streams_open == 1
    admission.open_stream()
    with pytest.raises(Overloaded):
        admission.open_stream()


def test_tile_slots_are_shared_and_released_once():
    async def main():
        admission = Admission(max_streams=1, stream_window=8, max_inflight_tiles=2)
        first, second = await admission.tile_slot(), await admission.tile_slot()
        full = await blocked(admission.tile_slot())
        first.release()
        first.release()  # idempotent
        third = await admission.tile_slot()
        still_full = await blocked(admission.tile_slot())  # the double release freed only one
        second.release(), third.release()
        return full, still_full

    assert run(main()) == (True, True)


def test_a_stream_reads_no_further_than_its_window():
    async def main():
        admission = Admission(max_streams=4, stream_window=2, max_inflight_tiles=8)
        stream = admission.open_stream()
        slots = [await stream.admit_request(), await stream.admit_request()]
        window_full = await blocked(stream.admit_request())
        for slot in slots:  # the tiles are done, but their replies were not taken yet
            slot.release()
        still_full = await blocked(stream.admit_request())
        stream.reply_taken()
        reads_on = not await blocked(stream.admit_request())
        return window_full, still_full, reads_on

    assert run(main()) == (True, True, True)


def test_a_stream_waiting_for_a_tile_slot_gives_its_window_place_back_when_cancelled():
    async def main():
        admission = Admission(max_streams=4, stream_window=1, max_inflight_tiles=1)
        busy = await admission.tile_slot()  # another stream's tile holds the only slot
        stream = admission.open_stream()
        waited = await blocked(stream.admit_request())  # cancelled while waiting for the slot
        busy.release()
        slot = await asyncio.wait_for(stream.admit_request(), 1)  # its window place is free again
        slot.release()
        return waited

    assert run(main()) is True
