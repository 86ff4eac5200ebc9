"""`tsva export CHECKPOINT`: ONNX (fp32 / fp16) or TensorRT plan, with metadata and a parity check."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from tsva.common import model_repository

from ..errors import TsvaExportError
from ..paths import REPO_ROOT

HELP = "export a checkpoint to ONNX / TensorRT"

DEFAULT_TENSORRT_DIR = REPO_ROOT / "build" / "trt_repository"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint written by `tsva train` (e.g. runs/tsva/best.pt)")
    parser.add_argument("-o", "--output", default=None,
                        help="output file (default: a new version in the model repository, "
                             f"REPOSITORY/{model_repository.SHIPPED_MODEL_NAME}/VERSION/model.onnx); for "
                             f"--format tensorrt a folder (default {DEFAULT_TENSORRT_DIR})")
    model_repository.add_argument(parser, help=(
        f"model repository the new version goes to (env {model_repository.ENV}; default: the checkout's "
        f"model_repository/, else {model_repository.FALLBACK_REPOSITORY})"))
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the version --model-version names when it exists (else refused)")
    parser.add_argument("--format", choices=("onnx", "onnx-fp16", "tensorrt"), default="onnx",
                        help="onnx: float32 (the shipped model); onnx-fp16: fp16 arithmetic with float32 "
                             "inputs/outputs, for GPUs; tensorrt: a TensorRT plan (needs TensorRT)")
    parser.add_argument("--fp16", metavar="OUT", help="also write the fp16 ONNX variant to OUT")
    parser.add_argument("--evaluation", metavar="JSON", default=None,
                        help="evaluation JSON of `tsva evaluate` of THIS model, whose summary goes into the "
                             "metadata (default: none, the summary stays empty)")
    parser.add_argument("--model-version", default=None,
                        help="the version to write and its metadata model_version (default: the next free "
                             "version in the repository; 1 with -o)")
    parser.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    parser.add_argument("--io", choices=("float32", "uint8", "uint16"), default="float32",
                        help="model I/O: float32 NCHW in [0, 1] (the shipped model), or the shots and the "
                             "fused tile as uint8/uint16 NHWC pixels with the casts inside the graph (GPU "
                             "serving; CHECKPOINT may then also be a float32 ONNX file to wrap)")
    parser.add_argument("--triton-dir", metavar="REPOSITORY", default=None,
                        help="with --io uint8/uint16: also write REPOSITORY/tsva_<io>/ (config.pbtxt and "
                             "1/model.onnx), a Triton model for GPUs taking whole tiles")


def evaluation_summary(path: str | Path | None) -> str:
    """The `summary` of the evaluation JSON given with --evaluation; empty without one (a model's
    metadata never carries another model's figures)."""
    if path is None:
        return ""
    path = Path(path)
    try:
        summary = json.loads(path.read_text()).get("summary")
    except (OSError, ValueError) as exc:
        raise TsvaExportError(f"--evaluation {path}: not a readable evaluation JSON ({exc.__class__.__name__})") from None
    if not isinstance(summary, str):
        raise TsvaExportError(f"--evaluation {path}: no summary (a `tsva evaluate` evaluation.json has one)")
    return summary


def _destination(args: argparse.Namespace) -> tuple[Path, str, str | None]:
    """(model file, its model_version, a note on serving) for the float32 ONNX export: -o as given,
    else the next version (or --model-version) of the shipped model's folder in the repository."""
    if args.output:
        return Path(args.output), args.model_version or "1", None
    repository = model_repository.resolve(args.model_repository)
    name = model_repository.SHIPPED_MODEL_NAME
    if args.model_version is not None and not str(args.model_version).isdigit():
        raise TsvaExportError(f"--model-version {args.model_version!r}: a repository version is a positive integer")
    try:
        version, path = model_repository.new_version(
            repository, name, version=None if args.model_version is None else int(args.model_version),
            overwrite=args.overwrite)
    except model_repository.ModelRepositoryError as exc:
        raise TsvaExportError(str(exc)) from None
    return path, str(version), model_repository.serving_note(repository, name, version)


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
    output, version, note = (Path(args.output or DEFAULT_TENSORRT_DIR), args.model_version or "1", None) \
        if args.format == "tensorrt" else _destination(args)
    meta = model_metadata(
        network, optics, patch_size=int(train.get("crop") or train.get("patch_size", 224)),
        training_data=str(ckpt.get("training_data", "unknown")),
        training_command=str(ckpt.get("training_command", "unknown")),
        evaluation_summary=evaluation_summary(args.evaluation), model_version=version,
        sample=Sample(**ckpt["sample"]) if "sample" in ckpt else None,
        distribution=SectionDistribution.from_dict(ckpt["distribution"]) if ckpt.get("distribution") else None)
    if args.format == "tensorrt":
        return _tensorrt(net, meta, output)
    with tempfile.TemporaryDirectory(prefix="tsva-export-") as tmp:
        # Written and checked aside, then moved in: a failed export leaves no version behind.
        staged = export_onnx(net, Path(tmp) / output.name, meta, fp16=args.format == "onnx-fp16")
        if args.format == "onnx" and not args.no_parity:
            diff = check_parity(net, staged)
            print(f"parity ONNX Runtime vs PyTorch: max abs diff {diff:.2e} (tolerance {PARITY_TOLERANCE:g})")
            if not diff <= PARITY_TOLERANCE:
                print(f"tsva export: parity check FAILED; {output} not written", file=sys.stderr)
                return 1
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staged, output)
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, {args.format}, model_version {version})")
    if note:
        print(f"tsva export: note: {note}", file=sys.stderr)
    if args.fp16:
        export_onnx(net, args.fp16, meta, fp16=True)
        print(f"wrote {args.fp16} (onnx-fp16)")
    return 0


def _tensorrt(net, meta: dict, output: Path) -> int:
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
