"""tsva.common.metadata: the typed ONNX metadata_props (round trip, the shipped model, unknown
keys, unreadable numbers)."""
from __future__ import annotations

from pathlib import Path

import pytest
from tsva.common.metadata import (
    MetadataError,
    ModelMetadata,
    OpticsMetadata,
    SectionMetadata,
    read_onnx_metadata,
    read_onnx_props,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "model_repository" / "tsva" / "1" / "model.onnx"


def test_shipped_model_reads_typed_and_round_trips_unchanged():
    props = read_onnx_props(SHIPPED)
    meta = read_onnx_metadata(SHIPPED)
    assert meta.to_props() == props
    assert meta.model_name == "tsva" and meta.model_version == "1" and meta.architecture == "tsva"
    assert meta.optics == OpticsMetadata(0.75, 1.0, 0.25, (0.61, 0.53, 0.47), (0.5, 1.0, 1.5, 2.0, 2.5, 3.0), 1.0)
    # Trained on the per-pair section distribution: no single section, its ranges instead.
    assert meta.section.thickness_um is None and meta.section.distribution.startswith("25% single thin plane")
    assert meta.section.distribution_ranges["thickness_um"] == (0.5, 5.0)
    assert (meta.patch_size, meta.base_width, meta.depth, meta.size_multiple) == (96, 16, 3, 8)
    assert meta.training_command.startswith("tsva train --arch tsva")
    assert meta.condition == "none" and not meta.conditioned
    assert meta.extra == {} and meta.unreadable == {}


def test_every_known_key_round_trips_as_written():
    props = {
        "model_name": "tsva", "model_version": "3", "architecture": "tsva", "condition": "defocus",
        "optics.numerical_aperture": "0.75", "optics.refractive_index": "1", "optics.pixel_size_um": "0.2527",
        "optics.wavelengths_um": "0.61,0.53,0.47", "optics.defocus_um": "0.5,1", "optics.focus_sigma_um": "1",
        "sample.distribution": "30% single thin plane, else 0-6 um",
        "distribution.thin_fraction": "0.3", "distribution.thickness_um": "0,6",
        "patch_size": "128", "base_width": "16", "depth": "3", "size_multiple": "8",
        "training_data": "runs/textures", "training_command": "tsva train", "evaluation_summary": "",
        "io.contract": "uint8-nhwc", "io.size_multiple": "1", "io.min_size": "16",
        "precision": "int8", "quantization": "static QDQ", "quantization.source_sha256": "ab" * 32,
    }
    meta = ModelMetadata.from_props(props)
    assert meta.to_props() == props
    assert meta.conditioned and meta.io.contract == "uint8-nhwc" and meta.io.min_size == 16
    assert meta.section.distribution_ranges == {"thin_fraction": (0.3,), "thickness_um": (0.0, 6.0)}
    assert meta.evaluation_summary == "" and meta.extra == {}


def test_built_record_writes_the_exporters_strings():
    meta = ModelMetadata(model_name="tsva", model_version="2", optics=OpticsMetadata(
        numerical_aperture=0.75, pixel_size_um=0.25, wavelengths_um=(0.61, 0.53, 0.47)),
        section=SectionMetadata(thickness_um=4.0, layers=5), patch_size=96)
    assert meta.to_props() == {
        "model_name": "tsva", "model_version": "2", "optics.numerical_aperture": "0.75",
        "optics.pixel_size_um": "0.25", "optics.wavelengths_um": "0.61,0.53,0.47",
        "sample.thickness_um": "4", "sample.layers": "5", "patch_size": "96"}
    # :g would round 1/3 to 6 digits; the value is kept whole instead.
    assert float(ModelMetadata(optics=OpticsMetadata(pixel_size_um=1 / 3)).to_props()["optics.pixel_size_um"]) == 1 / 3


def test_unknown_keys_are_kept_unchanged():
    props = {"model_name": "tiny", "note": "test model", "vendor.scanner": "X 1.0", "distribution.new": "1,2"}
    meta = ModelMetadata.from_props(props)
    assert meta.extra == {"note": "test model", "vendor.scanner": "X 1.0"}
    assert meta.section.distribution_ranges == {"new": (1.0, 2.0)}
    assert meta.to_props() == props


def test_missing_keys_are_none():
    meta = ModelMetadata.from_props({})
    assert meta == ModelMetadata() and meta.to_props() == {}
    assert meta.optics.pixel_size_um is None and meta.section.layers is None and meta.io.size_multiple is None
    with pytest.raises(MetadataError, match="base_width: missing"):
        meta.require("base_width")


def test_unreadable_numbers_are_none_kept_and_named_by_require():
    props = {"base_width": "wide", "optics.pixel_size_um": "0.25um", "optics.wavelengths_um": "0.61,x",
             "optics.focus_sigma_um": " ", "depth": "3", "distribution.read_noise": "low"}
    meta = ModelMetadata.from_props(props)
    assert meta.base_width is None and meta.optics.pixel_size_um is None and meta.optics.wavelengths_um is None
    assert meta.optics.focus_sigma_um is None  # blank: missing, not unreadable
    assert meta.unreadable == {"base_width": "wide", "optics.pixel_size_um": "0.25um",
                               "optics.wavelengths_um": "0.61,x", "distribution.read_noise": "low"}
    assert meta.require("depth") == 3
    with pytest.raises(MetadataError, match="base_width: 'wide' is not a number"):
        meta.require("base_width")
    written = meta.to_props()
    assert {k: written[k] for k in meta.unreadable} == meta.unreadable and written["depth"] == "3"
