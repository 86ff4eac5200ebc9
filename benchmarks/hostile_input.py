"""Hostile input and slow clients against a real gateway process with default flags (only the
addresses are loopback and the ports free), over real gRPC; memory from the gateway's /proc.

Phases (each reports the gateway's RSS before, its peak (VmHWM, reset per phase through
/proc/PID/clear_refs) and after, in MiB):
1. png_bombs:    six hidden-header 12000x12000 PNG bombs in one FuseTiles stream.
2. tiff_samples: the 1024x1024x1500-samples TIFF through Fuse.
3. stalled:      a FuseTiles stream of 48 tiles of 1224x1024 RGB whose client reads no reply:
                 how many requests the gateway pulled (counted as the client's iterator is drained).
4. corpus:       every case of tests/support/hostile_corpus.py plus the wire cases (unparseable message,
                 non-UTF-8 tile_id, 1-MB tile_id, 1-MB slide_id) through Fuse and in one stream.
5. fuzz:         seeded mutations of valid requests through Fuse and FuseTiles (streams of 50):
                 status codes, unanswered messages, streams ended by a bad message.
"start" is the RSS after two good tiles (ONNX Runtime's arena grows once more on its second run of
a whole tile, ~260 MB for the shipped model, and then stays), "end" after all phases; both are
printed.

Usage: python benchmarks/hostile_input.py [--model PATH|tiny] [--fuzz 600] [--seed 1] [--json]
"Before" figures: run it with PYTHONPATH pointing at an older checkout's clients/ and server/.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import hostile_corpus as corpus  # noqa: E402
from tests.support.gateway import channel_options, start_gateway  # noqa: E402
from tests.support.models import make_tiny_onnx  # noqa: E402
from tests.support.metrics import metric  # noqa: E402
from tsva.common.images import encode_image  # noqa: E402
from tsva.server.config import DEFAULT_MODEL_PATH  # noqa: E402
from tsva.v1 import tsva_pb2 as pb  # noqa: E402

MiB = 2 ** 20
FUSE, FUSE_TILES = "/tsva.v1.VirtualAutofocus/Fuse", "/tsva.v1.VirtualAutofocus/FuseTiles"


class Proc:
    def __init__(self, pid: int):
        self.pid = pid

    def status(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / MiB
        raise KeyError(key)

    def rss(self) -> float:
        return self.status("VmRSS")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS

    def settled_rss(self, seconds: float = 3.0) -> float:
        time.sleep(seconds)
        return self.rss()


def phase(proc: Proc, name: str, run, results: dict) -> None:
    before = proc.settled_rss(1.0)
    proc.reset_peak()
    started = time.perf_counter()
    extra = run() or {}
    seconds = time.perf_counter() - started
    peak = proc.status("VmHWM")
    after = proc.settled_rss()
    results[name] = {"rss_before_mib": round(before, 1), "peak_mib": round(peak, 1),
                     "peak_over_before_mib": round(peak - before, 1), "rss_after_mib": round(after, 1),
                     "seconds": round(seconds, 1), **extra}
    print(f"{name}: {json.dumps(results[name])}", flush=True)


def raw_methods(channel: grpc.Channel):
    fuse = channel.unary_unary(FUSE, request_serializer=None, response_deserializer=pb.FuseResponse.FromString)
    stream = channel.stream_stream(FUSE_TILES, request_serializer=None,
                                   response_deserializer=pb.FuseResponse.FromString)
    return fuse, stream


def code_of_unary(fuse, raw: bytes) -> str:
    try:
        fuse(raw, timeout=120)
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name


def stream_codes(stream, messages: list[bytes]) -> tuple[collections.Counter, int, str]:
    """(codes of the replies, replies, the stream's final status)."""
    codes, replies = collections.Counter(), 0
    try:
        for reply in stream(iter(messages), timeout=300):
            replies += 1
            codes[reply.error.status if reply.HasField("error") else "OK"] += 1
        final = "OK"
    except grpc.RpcError as exc:
        final = exc.code().name
    return codes, replies, final


def tile(seed: int, height: int = 1024, width: int = 1224) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def run(args) -> dict:
    model = args.model
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if model == "tiny":
        model = make_tiny_onnx(workdir / "tiny.onnx")
    print("building the corpus ...", flush=True)
    wire_cases = {
        "unparseable": corpus.UNPARSEABLE,
        "non_utf8_tile_id": corpus.non_utf8_tile_id(),
        "tile_id_1mb_bad_shot": pb.FuseRequest(tile_id="x" * MiB, shot_a=corpus.good_shot()).SerializeToString(),
        "slide_id_1mb": pb.FuseRequest(tile_id="long-slide", slide_id="s" * MiB, shot_a=corpus.good_shot(),
                                       shot_b=corpus.good_shot()).SerializeToString(),
    }
    cases = {name: corpus.request(name).SerializeToString() for name in corpus.CASES}
    bomb = pb.FuseRequest(shot_a=pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=corpus.hidden_header_png()),
                          shot_b=corpus.good_shot())
    results: dict = {"model": str(model)}
    with start_gateway(model, timeout=120) as gw, gw.channel() as channel:
        proc = Proc(gw.process.pid)
        fuse, stream = raw_methods(channel)
        good = pb.FuseRequest(tile_id="warm", shot_a=encode_image(tile(0)), shot_b=encode_image(tile(1)))
        for _ in range(2):  # ONNX Runtime plans its memory pattern on the second run (a one-time +260 MB)
            fuse(good.SerializeToString(), timeout=300)
        start = proc.settled_rss()
        results["start_rss_mib"] = round(start, 1)
        print(f"start: RSS {start:.1f} MiB", flush=True)

        def png_bombs():
            msgs = []
            for i in range(6):
                bomb.tile_id = f"bomb-{i}"
                msgs.append(bomb.SerializeToString())
            codes, replies, final = stream_codes(stream, msgs)
            return {"codes": dict(codes), "replies": replies, "stream": final}

        def tiff_samples():
            return {"code": code_of_unary(fuse, cases["tiff_samples_bomb"])}

        def stalled():
            pulled = [0]
            request = pb.FuseRequest(shot_a=encode_image(tile(2)), shot_b=encode_image(tile(3)))

            def requests():
                for i in range(48):
                    request.tile_id = f"stalled-{i}"
                    pulled[0] += 1
                    yield request.SerializeToString()

            # A client that stops reading: no BDP probing (the window is not grown for it), and the
            # replies are never taken from the call.
            options = channel_options() + [("grpc.http2.bdp_probe", 0)]
            with grpc.insecure_channel(gw.address, options=options) as slow:
                call = slow.stream_stream(FUSE_TILES, request_serializer=None,
                                          response_deserializer=pb.FuseResponse.FromString)(requests(), timeout=600)
                # Stalled: nothing pulled for a while and no tile in work (all read ones done).
                last, stable_since = -1, time.monotonic()
                deadline = time.monotonic() + args.stall_s
                while time.monotonic() < deadline and pulled[0] < 48:
                    time.sleep(0.5)
                    if pulled[0] != last:
                        last, stable_since = pulled[0], time.monotonic()
                    elif (time.monotonic() - stable_since > args.stable_s
                          and metric(gw.metrics_url, "tsva_inflight_tiles") == 0):
                        break
                stalled_rss = proc.settled_rss(2.0)
                peak = proc.status("VmHWM")
                call.cancel()
            return {"pulled": pulled[0], "of": 48, "rss_while_stalled_mib": round(stalled_rss, 1),
                    "peak_during_stall_mib": round(peak, 1)}

        def whole_corpus():
            codes = collections.Counter()
            messages = {}
            for name, raw in {**cases, **wire_cases}.items():
                code = code_of_unary(fuse, raw)
                codes[code] += 1
                messages[name] = code
            s_codes, replies, final = stream_codes(stream, list(cases.values()) + list(wire_cases.values()))
            return {"unary_codes": dict(codes), "unary": messages, "stream_codes": dict(s_codes),
                    "stream_replies": replies, "stream_messages": len(cases) + len(wire_cases), "stream": final}

        def fuzz():
            messages = corpus.fuzz_messages(args.seed, args.fuzz)
            half = len(messages) // 2
            unary = collections.Counter(code_of_unary(fuse, m) for m in messages[:half])
            s_codes, replies, ended = collections.Counter(), 0, 0
            chunks = [messages[i:i + 50] for i in range(half, len(messages), 50)]
            for chunk in chunks:
                codes, n, final = stream_codes(stream, chunk)
                s_codes.update(codes)
                replies += n
                ended += final != "OK"
            return {"messages": len(messages), "unary_codes": dict(unary), "stream_codes": dict(s_codes),
                    "stream_unanswered": len(messages) - half - replies, "streams": len(chunks),
                    "streams_ended_by_error": ended}

        for name, fn in (("png_bombs", png_bombs), ("tiff_samples", tiff_samples), ("stalled", stalled),
                         ("corpus", whole_corpus), ("fuzz", fuzz)):
            if name in args.phases:
                phase(proc, name, fn, results)
        end = proc.settled_rss(5.0)
        results["end_rss_mib"] = round(end, 1)
        results["end_over_start_mib"] = round(end - start, 1)
        results["alive"] = gw.process.poll() is None
        print(f"end: RSS {end:.1f} MiB ({end - start:+.1f} over start); alive {results['alive']}", flush=True)
    with open("/proc/loadavg") as f:
        results["loadavg"] = f.read().strip()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="ONNX model, or 'tiny' (default: shipped)")
    parser.add_argument("--fuzz", type=int, default=600, help="fuzzed messages (half unary, half in streams)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stall-s", type=float, default=240.0, help="longest wait for the stalled stream")
    parser.add_argument("--stable-s", type=float, default=5.0,
                        help="no new pull for this long and no tile in work: stalled")
    parser.add_argument("--phases", default="png_bombs,tiff_samples,stalled,corpus,fuzz")
    parser.add_argument("--workdir", default="/tmp/tsva-hostile-bench")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object at the end")
    args = parser.parse_args()
    args.phases = set(args.phases.split(","))
    results = run(args)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
