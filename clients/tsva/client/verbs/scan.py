"""`tsva scan`: a whole slide through a server -> pyramidal OME-TIFF + OpenSlide TIFF, QC CSV, focus map.

Input: a scanner's manifest (CSV or JSON; see docs/slides.md), or `--simulate IMAGE` (a two-shot
scan simulated from a large in-focus image; needs tsva-export). Exit status: 0 every tile fused;
1 tiles not fused (server gone, tile errors: listed; the partial slide is written, --resume
continues); 2 bad input (the manifest row is named).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tsva.client.verbs import common
from tsva.common.errors import BadInput

HELP = "scan a whole slide through a server into a pyramidal slide"
describe_error = common.describe_error  # how the dispatcher words gRPC, TLS and file errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("manifest", nargs="?", metavar="MANIFEST",
                        help="the scanner's manifest: .csv or .json with tile_id,x,y,shot_a,shot_b,defocus_a_um,defocus_b_um")
    source.add_argument("--simulate", metavar="IMAGE", help="simulate a two-shot scan of this in-focus H&E image")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="output folder: slide.ome.tif, slide.tif, qc.csv, focus_map.png, summary.json")
    parser.add_argument("--resume", action="store_true", help="continue the unfinished scan in DIR")
    parser.add_argument("--window", type=common.number_type(int, 1), default=8, metavar="N",
                        help="tiles in flight on the stream (default %(default)s)")
    parser.add_argument("--compression", choices=("deflate", "zstd", "jpeg", "none"), default="jpeg",
                        help="TIFF compression (default %(default)s, lossy at --quality, what slide scanners write: "
                             "an eighth of deflate's size at half its writing CPU; deflate and zstd: lossless, zstd "
                             "needs a reader with zstd; jpeg and zstd need imagecodecs)")
    parser.add_argument("--quality", type=common.number_type(int, 1), default=90, help="JPEG quality")
    parser.add_argument("--dicom", action="store_true",
                        help="also write the slide as a DICOM WSI series into DIR/dicom/ (JPEG tiles copied, lossless "
                             "ones as JPEG 2000 lossless; needs tsva-client[dicom])")
    parser.add_argument("--write-threads", type=common.number_type(int, 1), metavar="N",
                        help="threads that build the pyramid and encode the slide's tiles (default: the CPUs available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    sim = parser.add_argument_group("--simulate")
    sim.add_argument("--image-pixel-size", type=common.number_type(float, 0, exclusive=True), metavar="UM",
                     help="pixel size of IMAGE in um (default: from a name like x_0.5um.png, else 0.5)")
    sim.add_argument("--dd", type=common.number_type(float, 0, exclusive=True), default=1.0, metavar="UM",
                     help="shots at F - dD and F + dD (default %(default)s)")
    sim.add_argument("--tile-size", default="1224x1024", metavar="WxH", help="tile size (default %(default)s)")
    sim.add_argument("--overlap", type=common.number_type(int, 0), default=64, metavar="PX",
                     help="overlap of neighbouring tiles (default %(default)s)")
    sim.add_argument("--tilt", type=float, default=1.5, metavar="UM",
                     help="tilt of the focus surface across the slide (default %(default)s)")
    sim.add_argument("--unevenness", type=float, default=0.5, metavar="UM",
                     help="amplitude of its unevenness (default %(default)s)")
    sim.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    sim.add_argument("--max-tiles", type=common.number_type(int, 1), metavar="N", help="scan only the first N tiles")
    common.add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tsva.client.loadtest.tiles import parse_size
    from tsva.client.scan.manifest import ManifestError, read_manifest
    from tsva.client.scan.run import Scan, ScanInputError

    source = args.manifest or args.simulate
    simulator = None
    try:
        if args.simulate:
            from tsva.client.scan.simulate import SimulationUnavailable, Simulator
            try:
                simulator = Simulator(args.simulate, image_pixel_um=args.image_pixel_size, dd_um=args.dd,
                                      tile=parse_size(args.tile_size, minimum=32), overlap=args.overlap,
                                      tilt_um=args.tilt,
                                      unevenness_um=args.unevenness, seed=args.seed, max_tiles=args.max_tiles)
            except SimulationUnavailable as exc:
                raise BadInput(str(exc)) from exc
            slide = simulator.slide
        else:
            slide = read_manifest(args.manifest)
        scan = Scan(slide, Path(args.output), window=args.window, compression=args.compression,
                    quality=args.quality, resume=args.resume, simulator=simulator, progress=not args.no_progress,
                    write_threads=args.write_threads, dicom=args.dicom)
    except (ManifestError, ScanInputError, ValueError, OSError) as exc:
        # Worded as the input's own problem (`tsva scan: manifest.csv: row 3 ...`), before any call.
        prefix = f"{source}: " if isinstance(exc, ManifestError) else ""
        raise BadInput(f"{prefix}{exc}") from exc
    args.scan = scan
    return _stream(args)


def _stream(args) -> int:
    with common.connect(args) as client:
        outcome = args.scan.run(client)
    summary = outcome.summary
    if args.json:
        print(json.dumps(summary))
    else:
        print(_describe(summary))
    if not outcome.complete:
        missing = outcome.unanswered + outcome.failed
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing)} in all)" if len(missing) > 20 else "")
        reason = f" ({summary['stream_error']})" if "stream_error" in summary else ""
        print(f"tsva scan: {len(missing)} tile(s) not fused{reason}: {shown}; listed in "
              f"{Path(args.output) / 'unanswered.txt'}; the slide is partial; run again with --resume",
              file=sys.stderr)
        return common.EXIT_CALL_FAILED
    return common.EXIT_OK


def _describe(s: dict) -> str:
    lines = [
        f"slide     {s['slide']} (QuPath, Bio-Formats) and {s['opens_in_openslide']} (OpenSlide)",
        f"size      {s['width']}x{s['height']} px at {s['pixel_size_um']:g} um/px, {len(s['levels'])} levels; {s['status']}",
        f"tiles     {s['fused']} of {s['tiles']} fused, {s['flagged_rescan']} flagged for rescan",
        f"speed     {s['wall_s']:.1f} s, {s['mp_per_s']:.2f} MP/s; writing {s['writer_cpu_s']:.1f} s CPU",
    ]
    if "psnr_fused_db" in s:
        lines.append(f"PSNR      fused {s['psnr_fused_db']:.2f} dB, sharper shot {s['psnr_sharper_shot_db']:.2f} dB "
                     f"(against the in-focus specimen)")
    if "qc_median_abs_error_um" in s:
        lines.append(f"focus QC  median |n error| {s['qc_median_abs_error_um']:.2f} um, max {s['qc_max_abs_error_um']:.2f} um")
    lines.append(f"focus map {s['focus_map']}")
    if "dicom" in s:
        lines.append(f"DICOM     {s['dicom']} (DICOM WSI series for a PACS; {s['dicom_cpu_s']:.1f} s CPU)")
    return "\n".join(lines)
