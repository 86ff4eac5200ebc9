"""The ONNX model's metadata_props: what the gateway shows in GetInfo and `tsva info`."""
from __future__ import annotations

from .distribution import SectionDistribution
from .network import NetworkConfig
from .optics import Optics, Sample

MODEL_NAME = "tsva"


def _csv(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def model_metadata(network: NetworkConfig, optics: Optics, *, patch_size: int, training_data: str,
                   training_command: str, evaluation_summary: str, model_version: str = "1",
                   sample: Sample | None = None,
                   distribution: SectionDistribution | None = None) -> dict[str, str]:
    section = {} if sample is None or distribution is not None else {
        "sample.thickness_um": f"{sample.thickness_um:g}",
        "sample.layers": str(sample.layers),
    }
    if distribution is not None:  # every pair drew its own section: the distribution, not one sample
        section = {"sample.distribution": distribution.describe(), **distribution.metadata()}
    return {
        "model_name": MODEL_NAME,
        "model_version": str(model_version),
        "architecture": network.arch,
        # "defocus": the model has a third input `dd` [batch, 1], the pair's dD in um; the gateway
        # feeds it from the request's defocus offsets (trained for optics.defocus_um).
        "condition": network.condition,
        "optics.numerical_aperture": f"{optics.numerical_aperture:g}",
        "optics.refractive_index": f"{optics.refractive_index:g}",
        "optics.pixel_size_um": f"{optics.pixel_size_um:g}",
        "optics.wavelengths_um": _csv(optics.wavelengths_um),
        "optics.defocus_um": _csv(optics.defocus_um),
        "optics.focus_sigma_um": f"{optics.focus_sigma_um:g}",
        **section,
        "patch_size": str(patch_size),
        "base_width": str(network.base_width),
        "depth": str(network.depth),
        "size_multiple": str(2 ** network.depth),
        "training_data": training_data,
        "training_command": training_command,
        "evaluation_summary": evaluation_summary,
    }
