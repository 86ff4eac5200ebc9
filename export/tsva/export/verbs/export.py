"""`tsva export CHECKPOINT`: ONNX (fp32 / fp16) or TensorRT plan, with metadata and a parity check."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import TsvaExportError
from ..paths import DOCS_DIR, REPO_ROOT, SHIPPED_MODEL
from .common import reports_errors

DEFAULT_TENSORRT_DIR = REPO_ROOT / "build" / "trt_repository"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint written by `tsva train` (e.g. runs/tsva/best.pt)")
    parser.add_argument("-o", "--output", default=None,
                        help=f"output file (default: the shipped model, {SHIPPED_MODEL}); for --format "
                             f"tensorrt a folder (default {DEFAULT_TENSORRT_DIR})")
    parser.add_argument("--format", choices=("onnx", "onnx-fp16", "tensorrt"), default="onnx",
                        help="onnx: float32 (the shipped model); onnx-fp16: fp16 arithmetic with float32 "
                             "inputs/outputs, for GPUs; tensorrt: a TensorRT plan (needs TensorRT)")
    parser.add_argument("--fp16", metavar="OUT", help="also write the fp16 ONNX variant to OUT")
    parser.add_argument("--evaluation", default=str(DOCS_DIR / "evaluation.json"),
                        help="evaluation JSON of `tsva evaluate` whose summary goes into the metadata "
                             "(default %(default)s; skipped if missing)")
    parser.add_argument("--model-version", default="1", help="metadata model_version (default %(default)s)")
    parser.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    parser.add_argument("--io", choices=("float32", "uint8", "uint16"), default="float32",
                        help="model I/O: float32 NCHW in [0, 1] (the shipped model), or the shots and the "
                             "fused tile as uint8/uint16 NHWC pixels with the casts inside the graph (GPU "
                             "serving; CHECKPOINT may then also be a float32 ONNX file to wrap)")
    parser.add_argument("--triton-dir", metavar="REPOSITORY", default=None,
                        help="with --io uint8/uint16: also write REPOSITORY/tsva_<io>/ (config.pbtxt and "
                             "1/model.onnx), a Triton model for GPUs taking whole tiles")


def evaluation_summary(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        return "not evaluated"
    try:
        return json.loads(path.read_text()).get("summary", "not evaluated")
    except (OSError, ValueError):
        return "not evaluated"


@reports_errors("export")
def run(args: argparse.Namespace) -> int:
    if args.io != "float32":
        return _pixel_io(args)
    from ..checkpoint import load_checkpoint
    from ..metadata import model_metadata
    from ..network import NetworkConfig
    from ..onnx_export import PARITY_TOLERANCE, check_parity, export_onnx
    from ..distribution import SectionDistribution
    from ..optics import Optics, Sample

    net, ckpt = load_checkpoint(args.checkpoint)
    network = NetworkConfig(**ckpt["network"])
    optics = Optics.from_dict(ckpt.get("optics", {}))
    train = ckpt.get("train", {})
    meta = model_metadata(
        network, optics, patch_size=int(train.get("crop") or train.get("patch_size", 224)),
        training_data=str(ckpt.get("training_data", "unknown")),
        training_command=str(ckpt.get("training_command", "unknown")),
        evaluation_summary=evaluation_summary(args.evaluation), model_version=args.model_version,
        sample=Sample(**ckpt["sample"]) if "sample" in ckpt else None,
        distribution=SectionDistribution.from_dict(ckpt["distribution"]) if ckpt.get("distribution") else None)
    if args.format == "tensorrt":
        output = Path(args.output or DEFAULT_TENSORRT_DIR)
        return _tensorrt(net, meta, output)
    output = Path(args.output or SHIPPED_MODEL)
    export_onnx(net, output, meta, fp16=args.format == "onnx-fp16")
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, {args.format})")
    if args.format == "onnx" and not args.no_parity:
        diff = check_parity(net, output)
        print(f"parity ONNX Runtime vs PyTorch: max abs diff {diff:.2e} (tolerance {PARITY_TOLERANCE:g})")
        if not diff <= PARITY_TOLERANCE:
            print("tsva export: parity check FAILED", file=sys.stderr)
            return 1
    if args.fp16:
        export_onnx(net, args.fp16, meta, fp16=True)
        print(f"wrote {args.fp16} (onnx-fp16)")
    return 0


def _tensorrt(net, meta: dict, output: Path) -> int:
    import tempfile

    from ..onnx_export import export_onnx
    try:
        from .. import tensorrt as trt_builder  # the triton engineer's TensorRT-plan builder
    except ImportError as exc:
        raise TsvaExportError(f"--format tensorrt is unavailable here: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(net, Path(tmp) / "model.onnx", meta)
        trt_builder.build_plan(onnx_path, output)  # prints what it wrote and how to build the plan
    return 0


def _pixel_io(args: argparse.Namespace) -> int:
    """--io uint8/uint16: the float32 model (exported from the checkpoint, or the ONNX file given)
    wrapped so that it takes and returns pixels."""
    import tempfile

    from .. import pixel_io
    if args.format != "onnx":
        raise TsvaExportError(f"--io {args.io}: only with --format onnx (the wrapper casts to float32)")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(args.checkpoint)
        if source.suffix != ".onnx":
            float_args = argparse.Namespace(**{**vars(args), "io": "float32", "fp16": None, "triton_dir": None,
                                               "output": str(Path(tmp) / "model.onnx")})
            if run(float_args) != 0:
                return 1
            source = Path(float_args.output)
        output = Path(args.output or REPO_ROOT / "build" / f"model_{args.io}.onnx")
        try:
            pixel_io.write_pixel_model(source, output, args.io)
            print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, {args.io} NHWC I/O)")
            if args.triton_dir:
                model_dir = pixel_io.write_triton_variant(source, args.triton_dir, args.io)
                print(f"wrote {model_dir}/config.pbtxt and {model_dir}/1/model.onnx")
        except pixel_io.PixelIOError as exc:
            raise TsvaExportError(str(exc)) from None
    return 0
