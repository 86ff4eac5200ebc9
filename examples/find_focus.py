"""Find the focal plane F of a first tile from a z-stack (the paper's first step; every later tile
is then shot only twice, at F - dD and F + dD).

    python examples/find_focus.py                    # a synthetic stack in focus at z = 0.3 um
    python examples/find_focus.py z0.png z1.png z2.png --z -0.5 0 0.5
"""
import argparse

import numpy as np

from tsva.client import Client

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("planes", nargs="*", help="plane images in z order; synthetic when left out")
parser.add_argument("--z", type=float, nargs="+", help="z of each plane in um")
parser.add_argument("--server", default="localhost:50051")
args = parser.parse_args()

if args.planes:
    planes, z = args.planes, args.z
else:
    from _tiles import defocus, tissue
    z = list(np.arange(-2.0, 2.01, 0.5))
    sharp = tissue()
    planes = [defocus(sharp, 0.1 + 1.5 * abs(zi - 0.3)) for zi in z]  # blur grows away from z = 0.3

with Client(args.server, timeout=60) as client:
    result = client.find_focus(planes, z, tile_id="first-tile")
print(f"sharpest plane {result.best_index} at z = {result.best_z_um:+.2f} um; "
      f"refined focus F = {result.refined_z_um:+.3f} um")
for zi, score in zip(z, result.brenner):
    print(f"  z {zi:+.2f} um  Brenner {score:.4g}")
