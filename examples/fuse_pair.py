"""Fuse one pair of shots through a TSVA gateway and save the in-focus tile.

    tsva serve &                                      # the gateway, default model
    python examples/fuse_pair.py                      # synthetic shots
    python examples/fuse_pair.py a.png b.png -o fused.png --server host:50051
"""
import argparse

from tsva.client import Client, TsvaError

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("shots", nargs="*", help="SHOT_A SHOT_B (PNG/TIFF); synthetic shots when left out")
parser.add_argument("-o", "--output", default="fused.png")
parser.add_argument("--server", default="localhost:50051")
args = parser.parse_args()

if args.shots:
    shot_a, shot_b = args.shots  # file paths are sent as they are (PNG/TIFF) or decoded here
else:
    from _tiles import shot_pair
    shot_a, shot_b = shot_pair()  # numpy arrays, H x W x 3 uint8

try:
    with Client(args.server, timeout=120) as client:
        result = client.fuse(shot_a, shot_b, defocus_a_um=-1.0, defocus_b_um=1.0, tile_id="example")
except TsvaError as exc:  # carries the gRPC code and the server's message
    raise SystemExit(f"fuse failed: {exc}")

print(f"Brenner A {result.brenner_a:.4g}, B {result.brenner_b:.4g}: shot {result.y1_shot} was Y1")
print(f"fused {result.image.shape} {result.image.dtype} in {result.timings.round_trip_ms:.0f} ms "
      f"({result.timings.inference_ms:.0f} ms inference)")
print("wrote", result.save(args.output))
