"""`tsva info`: the server's version, model, optics the model was trained for, and limits."""
from __future__ import annotations

import argparse
import json

from tsva.client.verbs import common
from tsva.common.metadata import ModelMetadata

HELP = "show server, model and limits"
describe_error = common.describe_error  # how the dispatcher words gRPC, TLS and file errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    common.add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    with common.connect(args) as client:
        info = client.info()
        health = client.health()
    if args.json:
        print(json.dumps({"server": args.server, "health": health, **info.to_dict()}))
        return common.EXIT_OK
    print(describe(info, args.server, health))
    return common.EXIT_OK


def _numbers(values, unit: str = "") -> str:
    return ", ".join(f"{v:g}" for v in values) + unit if values else "(not given)"


def describe(info, server: str, health: str) -> str:
    o, lim = info.optics, info.limits
    lines = [
        f"server      {server} ({health})",
        f"service     tsva {info.service_version}",
        f"model       {info.model_name} version {info.model_version or '?'} on the {info.backend} backend",
        f"optics      NA {o.numerical_aperture:g}, immersion n {o.refractive_index:g}, "
        f"{o.pixel_size_um:g} um/px, wavelengths {_numbers(o.wavelengths_um, ' um')}",
        f"defocus dD  {_numbers(o.defocus_um, ' um')} (trained for); tile focus sigma {o.focus_sigma_um:g} um",
        f"patches     {info.patch_size} px, overlap {info.patch_overlap} px",
        f"limits      tile up to {lim.max_tile_width}x{lim.max_tile_height}, batch {lim.max_batch_size} patches, "
        f"message {common.format_bytes(lim.max_message_bytes)}, {lim.max_concurrent_streams or 'unlimited'} streams",
    ]
    meta = ModelMetadata.from_props(info.model_metadata or {})
    section = meta.section
    if section.distribution is not None:  # the per-pair training distribution of sections and sensors
        lines.append(f"trained on  {section.distribution}")
    elif section.thickness_um is not None:
        layers = "?" if section.layers is None else section.layers
        lines.append(f"trained on  a {section.thickness_um:g} um section in {layers} layers")
    if meta.conditioned:
        lines.append("condition   the pair's dD is an input of the network (from the request's defocus offsets)")
    if info.model_metadata:
        lines.append("metadata")
        lines.extend(f"  {key} = {value}" for key, value in sorted(info.model_metadata.items()))
    return "\n".join(lines)
