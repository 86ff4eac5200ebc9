"""Bookkeeping of a FuseTiles stream: tile ids, duplicates, out-of-order matching, broken streams.
Pure logic, no server (the same helper runs over a real stream in test_client_sdk.py)."""
import grpc
import numpy as np
import pytest
from tsva.client._core import StreamBook, as_pair, check_window
from tsva.client.results import FusePair
from tsva.v1 import tsva_pb2 as pb

SHOT = np.full((8, 8), 100, np.uint8)


def test_pair_forms():
    assert as_pair((SHOT, SHOT)).tile_id is None
    assert as_pair(("t1", SHOT, SHOT)).tile_id == "t1"
    assert as_pair({"shot_a": SHOT, "shot_b": SHOT, "slide_id": "s"}).slide_id == "s"
    with pytest.raises(TypeError):
        as_pair([SHOT, SHOT])


def test_ids_default_to_the_index_and_responses_match_out_of_order():
    book = StreamBook(default_encoding="png")
    requests = [book.prepare(i, (SHOT, SHOT))[0] for i in range(3)]
    assert [r.tile_id for r in requests] == ["0", "1", "2"]
    assert all(r.output_encoding == pb.IMAGE_ENCODING_PNG for r in requests)
    assert book.in_flight == 3
    for tile_id in ("2", "0", "1"):
        result = book.complete(pb.FuseResponse(tile_id=tile_id))
        assert result.index == int(tile_id) and result.timings.round_trip_ms >= 0
    assert book.in_flight == 0


def test_a_bad_pair_becomes_a_failed_result_and_is_not_sent():
    book = StreamBook()
    request, failure = book.prepare(4, FusePair(SHOT, np.zeros((8, 8), np.float64), tile_id="bad"))
    assert request is None
    assert failure.tile_id == "bad" and failure.index == 4
    assert failure.error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "tile 'bad'" in failure.error.message and "shot_b" in failure.error.message
    assert book.in_flight == 0


def test_duplicate_tile_id_in_flight_is_refused_but_may_be_reused_after():
    book = StreamBook()
    assert book.prepare(0, ("x", SHOT, SHOT))[0] is not None
    request, failure = book.prepare(1, ("x", SHOT, SHOT))
    assert request is None and "already in flight" in failure.error.message
    book.complete(pb.FuseResponse(tile_id="x"))
    assert book.prepare(2, ("x", SHOT, SHOT))[0] is not None


def test_broken_stream_names_every_tile_in_flight():
    book = StreamBook()
    for i in range(3):
        book.prepare(i, (SHOT, SHOT))
    book.complete(pb.FuseResponse(tile_id="1"))
    lost = book.abandon(grpc.StatusCode.UNAVAILABLE, "stream failed: server gone")
    assert [r.tile_id for r in lost] == ["0", "2"]
    assert all(r.error.code == grpc.StatusCode.UNAVAILABLE for r in lost)
    assert book.in_flight == 0


@pytest.mark.parametrize("window", [0, -1, 1.5])
def test_window_must_be_positive(window):
    with pytest.raises(ValueError, match="window"):
        check_window(window)
