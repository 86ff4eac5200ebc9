"""Seeded, bounded mutation fuzzing over real gRPC to a gateway process on loopback (tiny model):
a few hundred mutated FuseRequests (bit flips, byte sets, cuts, insertions, splices of valid
raw/PNG/TIFF requests; see tests/support/hostile_corpus.py) through Fuse and FuseTiles. Every message is
answered, only with OK or INVALID_ARGUMENT (never UNKNOWN or INTERNAL), no stream ends because of a
message, and the gateway is alive and SERVING afterwards."""
import collections

import grpc
import pytest
from grpc_health.v1 import health_pb2
from tsva.v1 import tsva_pb2 as pb

from tests.support import hostile_corpus as corpus
from tests.support.gateway import health_status

pytestmark = pytest.mark.slow

SEED, UNARY, STREAMS, PER_STREAM = 20261201, 150, 4, 40
ALLOWED = {"OK", "INVALID_ARGUMENT"}


@pytest.fixture(scope="module")
def channel(gateway):
    with gateway.channel() as channel:
        yield channel


def test_fuzzed_unary_messages_are_each_answered(channel, gateway):
    fuse = channel.unary_unary("/tsva.v1.VirtualAutofocus/Fuse", request_serializer=None,
                               response_deserializer=pb.FuseResponse.FromString)
    codes = collections.Counter()
    for raw in corpus.fuzz_messages(SEED, UNARY):
        try:
            fuse(raw, timeout=60)
            codes["OK"] += 1
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1
            assert exc.code().name in ALLOWED, exc.details()
    assert sum(codes.values()) == UNARY and codes["INVALID_ARGUMENT"] > 0, codes
    assert gateway.process.poll() is None
    assert health_status(gateway.address) == health_pb2.HealthCheckResponse.SERVING


def test_fuzzed_stream_messages_are_each_answered_and_streams_go_on(channel, gateway):
    stream = channel.stream_stream("/tsva.v1.VirtualAutofocus/FuseTiles", request_serializer=None,
                                   response_deserializer=pb.FuseResponse.FromString)
    codes = collections.Counter()
    for i in range(STREAMS):
        messages = corpus.fuzz_messages(SEED + 1 + i, PER_STREAM)
        replies = list(stream(iter(messages), timeout=120))  # an ended stream would raise here
        assert len(replies) == len(messages)
        codes.update(r.error.status if r.HasField("error") else "OK" for r in replies)
    assert set(codes) <= ALLOWED, codes
    assert codes["OK"] > 0 and codes["INVALID_ARGUMENT"] > 0, codes
    assert gateway.process.poll() is None
    assert health_status(gateway.address) == health_pb2.HealthCheckResponse.SERVING
