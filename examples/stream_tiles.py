"""Stream many tile pairs over one FuseTiles stream, a window of them in flight at once.

Results come back as they are ready (out of order, matched by tile id); a tile that fails comes
back as a result with .error set and the stream goes on.

    python examples/stream_tiles.py --tiles 16 --window 8 --server localhost:50051
"""
import argparse
import time

from _tiles import shot_pair
from tsva.client import Client, FusePair

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--tiles", type=int, default=16)
parser.add_argument("--window", type=int, default=8)
parser.add_argument("--size", type=int, nargs=2, default=(512, 612), metavar=("HEIGHT", "WIDTH"))
parser.add_argument("--server", default="localhost:50051")
args = parser.parse_args()


def pairs():
    """Lazily made, as a scanner would produce them: only `window` exist at a time."""
    for i in range(args.tiles):
        shot_a, shot_b = shot_pair(i, *args.size)
        yield FusePair(shot_a, shot_b, tile_id=f"tile-{i:04d}", slide_id="slide-1",
                       position=(i * args.size[1], 0), defocus_a_um=-1.0, defocus_b_um=1.0)


start = time.perf_counter()
ok = failed = 0
with Client(args.server) as client:
    for result in client.fuse_stream(pairs(), window=args.window):
        if result.ok:
            ok += 1
            print(f"{result.tile_id} at {result.position}: Y1 = shot {result.y1_shot}, "
                  f"{result.timings.round_trip_ms:.0f} ms")
        else:
            failed += 1
            print(f"{result.tile_id}: {result.error.status} {result.error.message}")
elapsed = time.perf_counter() - start
print(f"{ok} fused, {failed} failed in {elapsed:.1f} s ({ok / elapsed:.2f} tiles/s)")
