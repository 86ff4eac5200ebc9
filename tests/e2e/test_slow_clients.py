"""A client that stops reading its FuseTiles replies, against a real gateway process over real
gRPC on loopback (tiny model): the gateway stops pulling its requests once the stream's window is
full of replies not yet taken by gRPC, and goes on when the client reads again. The pulls are
counted as gRPC drains the client's request iterator; with 6-MB requests the transports' windows
(64 KiB, BDP probing off on both sides) hold well under one request."""
import threading
import time

import grpc
import numpy as np
import pytest
from tsva.common.images import encode_image
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.gateway import channel_options, start_gateway
from tests.support.metrics import metric

pytestmark = pytest.mark.slow

WINDOW, TILES = 4, 12


def wait_until_stalled(counter, metrics_url: str, seconds: float, timeout: float) -> int:
    """The pull count once it has not moved for `seconds` and the gateway has no tile in work
    (every tile it read is done: only undelivered replies hold the window)."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if counter[0] != last:
            last, since = counter[0], time.monotonic()
        elif time.monotonic() - since >= seconds and metric(metrics_url, "tsva_inflight_tiles") == 0:
            break
    return counter[0]


def test_stalled_reader_stops_the_gateway_reading(tiny_model):
    rng = np.random.default_rng(3)
    shot = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    request = pb.FuseRequest(shot_a=encode_image(shot), shot_b=encode_image(shot // 2))
    pulled, lock = [0], threading.Lock()

    def requests():
        for i in range(TILES):
            request.tile_id = f"slow-{i}"
            with lock:
                pulled[0] += 1
            yield request

    with start_gateway(tiny_model, patch_size=256, patch_overlap=32, stream_window=WINDOW) as gw:
        options = channel_options() + [("grpc.http2.bdp_probe", 0)]
        with grpc.insecure_channel(gw.address, options=options) as channel:
            replies = pb_grpc.VirtualAutofocusStub(channel).FuseTiles(requests(), timeout=300)
            stalled_at = wait_until_stalled(pulled, gw.metrics_url, seconds=2.0, timeout=120)
            # The window's tiles, one request waiting for a place, one or two in the transports.
            assert WINDOW <= stalled_at <= WINDOW + 3, stalled_at
            ids = [reply.tile_id for reply in replies]  # reading again lets the gateway go on
        assert sorted(ids) == sorted(f"slow-{i}" for i in range(TILES))
        assert pulled[0] == TILES
