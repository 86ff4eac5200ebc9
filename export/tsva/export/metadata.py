"""The ONNX model's metadata_props of an exported network: what the gateway shows in GetInfo and
`tsva info` (the keys and their types: tsva.common.metadata)."""
from __future__ import annotations

from tsva.common.metadata import ModelMetadata, OpticsMetadata, SectionMetadata

from .distribution import SectionDistribution
from .network import NetworkConfig
from .optics import Optics, Sample

MODEL_NAME = "tsva"


def training_metadata(network: NetworkConfig, optics: Optics, *, patch_size: int, training_data: str,
                      training_command: str, evaluation_summary: str, model_version: str = "1",
                      sample: Sample | None = None,
                      distribution: SectionDistribution | None = None) -> ModelMetadata:
    """The record of a trained network: its architecture, the optics and section it was trained
    for, how it was trained and (given) how it was evaluated."""
    section = SectionMetadata()
    if distribution is not None:  # every pair drew its own section: the distribution, not one sample
        ranges = ModelMetadata.from_props(distribution.metadata()).section.distribution_ranges
        section = SectionMetadata(distribution=distribution.describe(), distribution_ranges=ranges)
    elif sample is not None:
        section = SectionMetadata(thickness_um=sample.thickness_um, layers=sample.layers)
    return ModelMetadata(
        model_name=MODEL_NAME, model_version=str(model_version), architecture=network.arch,
        # "defocus": the model has a third input `dd` [batch, 1], the pair's dD in um; the gateway
        # feeds it from the request's defocus offsets (trained for optics.defocus_um).
        condition=network.condition,
        optics=OpticsMetadata(numerical_aperture=optics.numerical_aperture,
                              refractive_index=optics.refractive_index, pixel_size_um=optics.pixel_size_um,
                              wavelengths_um=tuple(optics.wavelengths_um), defocus_um=tuple(optics.defocus_um),
                              focus_sigma_um=optics.focus_sigma_um),
        section=section, patch_size=patch_size, base_width=network.base_width, depth=network.depth,
        size_multiple=2 ** network.depth, training_data=training_data, training_command=training_command,
        evaluation_summary=evaluation_summary)


def model_metadata(network: NetworkConfig, optics: Optics, **kwargs) -> dict[str, str]:
    """training_metadata(...) as the metadata_props strings export_onnx writes."""
    return training_metadata(network, optics, **kwargs).to_props()
