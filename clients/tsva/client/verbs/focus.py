"""`tsva focus PLANE... --z ...`: the sharpest plane of a z-stack (Brenner gradient), i.e. the focal
plane F of the first tile, from which the two-shot scan takes its shots at F - dD and F + dD."""
from __future__ import annotations

import argparse
import json

from tsva.client.verbs import common

HELP = "find the sharpest plane of a z-stack"
describe_error = common.describe_error  # how the dispatcher words gRPC, TLS and file errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("planes", nargs="+", metavar="PLANE", help="images of the z-stack, in z order")
    z = parser.add_mutually_exclusive_group(required=True)
    z.add_argument("--z", nargs="+", type=float, metavar="UM", help="z of each plane in um, one per PLANE")
    z.add_argument("--z-step", type=float, metavar="UM", help="planes are evenly spaced by this step (um)")
    parser.add_argument("--z-start", type=float, default=0.0, metavar="UM",
                        help="z of the first plane with --z-step (default 0)")
    parser.add_argument("--tile-id", default="", help="tile id to send (echoed in the answer)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    common.add_connection_arguments(parser)


def z_values(args: argparse.Namespace) -> list[float]:
    if args.z is not None:
        if len(args.z) != len(args.planes):
            raise ValueError(f"--z: {len(args.z)} values for {len(args.planes)} planes (one z per PLANE)")
        return list(args.z)
    if args.z_step == 0:
        raise ValueError("--z-step: must not be 0")
    return [args.z_start + i * args.z_step for i in range(len(args.planes))]


def run(args: argparse.Namespace) -> int:
    z = z_values(args)
    with common.connect(args) as client:
        result = client.find_focus(args.planes, z, tile_id=args.tile_id)
    if args.json:
        summary = result.to_dict()
        summary.update(best_plane=args.planes[result.best_index], planes=args.planes, z_um=z)
        print(json.dumps(summary))
        return common.EXIT_OK
    lines = [f"best plane  {result.best_index} ({args.planes[result.best_index]}) at z = {result.best_z_um:.3f} um",
             f"refined z   {result.refined_z_um:.3f} um (parabola through the scores around the best plane)",
             "", "  #     z (um)       Brenner  plane"]
    for i, (plane, zi, score) in enumerate(zip(args.planes, z, result.brenner)):
        mark = "*" if i == result.best_index else " "
        lines.append(f"{mark}{i:2d}  {zi:9.3f}  {score:12.6g}  {plane}")
    print("\n".join(lines))
    return common.EXIT_OK
