"""`tsva fuse SHOT_A SHOT_B -o OUT`: fuse two out-of-focus shots of one tile through a server."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tsva.client.verbs import common

HELP = "fuse two out-of-focus shots through a server"
describe_error = common.describe_error  # how the dispatcher words gRPC, TLS and file errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shot_a", metavar="SHOT_A", help="first shot (PNG, TIFF, or any image Pillow reads)")
    parser.add_argument("shot_b", metavar="SHOT_B", help="second shot, same size, channels and pixel type")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="fused tile to write; .png, .tif or .tiff")
    parser.add_argument("--dd", type=float, metavar="UM",
                        help="the shots were taken at F - dD (A) and F + dD (B): sets both defocus offsets")
    parser.add_argument("--defocus-a", type=float, default=0.0, metavar="UM",
                        help="focus offset of shot A from the focal plane, in um (default 0: not given)")
    parser.add_argument("--defocus-b", type=float, default=0.0, metavar="UM", help="the same for shot B")
    parser.add_argument("--tile-id", default="", help="tile id to send (echoed in the answer)")
    parser.add_argument("--slide-id", default="", help="slide id to send (echoed in the answer)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    common.add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tsva.client.inputs import encoding_for_path

    output = Path(args.output)
    encoding = encoding_for_path(output)  # before the call: a bad name costs no inference
    if not output.parent.is_dir():
        raise ValueError(f"-o: directory {str(output.parent)!r} does not exist")
    defocus_a, defocus_b = (-args.dd, args.dd) if args.dd is not None else (args.defocus_a, args.defocus_b)
    with common.connect(args) as client:
        result = client.fuse(args.shot_a, args.shot_b, defocus_a_um=defocus_a, defocus_b_um=defocus_b,
                             tile_id=args.tile_id, slide_id=args.slide_id, output_encoding=encoding)
    result.save(output)
    if args.json:
        summary = result.to_dict()
        summary.update(output=str(output), shot_a=args.shot_a, shot_b=args.shot_b)
        print(json.dumps(summary))
    else:
        print(_describe(result, args.shot_a, args.shot_b, output))
    return common.EXIT_OK


def _describe(result, shot_a: str, shot_b: str, output: Path) -> str:
    fused, t = result.fused, result.timings
    colour = {1: "grey", 3: "RGB"}.get(fused.channels, f"{fused.channels} channels")
    pixel = {1: "uint8", 2: "uint16"}.get(fused.pixel_type, "?")
    y1_file = {"A": shot_a, "B": shot_b}.get(result.y1_shot, "?")
    return "\n".join([
        f"wrote     {output} ({fused.width}x{fused.height} {colour} {pixel})",
        f"brenner   A {result.brenner_a:.6g} ({shot_a})   B {result.brenner_b:.6g} ({shot_b})",
        f"Y1        shot {result.y1_shot} ({y1_file}), the sharper one",
        f"timings   decode {t.decode_ms:.1f} ms, queue {t.queue_ms:.1f} ms, inference {t.inference_ms:.1f} ms, "
        f"encode {t.encode_ms:.1f} ms; server total {t.total_ms:.1f} ms, round trip {t.round_trip_ms:.1f} ms",
    ])
