"""The per-pair training distribution (sections, noise, stain): draws cover thin and thick sections,
pools record it and refuse another, checkpoints and the ONNX metadata carry it; a defocus-conditioned
network starts as its unconditioned source; the shipped ONNX model's weights import exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tsva.common.metadata import read_onnx_props
from tsva.export.distribution import SectionDistribution
from tsva.export.metadata import model_metadata
from tsva.export.network import NetworkConfig, build_network, load_compatible_weights
from tsva.export.onnx_export import export_onnx
from tsva.export.onnx_weights import import_onnx_weights
from tsva.export.optics import Optics, Sample

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_draws_cover_a_thin_plane_and_thick_sections():
    dist, rng = SectionDistribution(), np.random.default_rng(0)
    draws = [dist.draw(Sample(), rng) for _ in range(400)]
    thick = np.array([s.thickness_um for s, _ in draws])
    assert 0.15 < np.mean(thick == 0) < 0.35 and thick.max() > 4.5 and thick.max() <= 5.0
    assert all(s.layers == 1 for s, _ in draws if s.thickness_um == 0)
    photons = [s.photons_at_white for s, _ in draws]
    assert min(photons) >= 600 and max(photons) <= 4000 and np.std(photons) > 300
    assert len({round(j, 3) for _, j in draws}) > 50


def test_metadata_carries_the_distribution_and_the_condition(tmp_path):
    net = build_network(NetworkConfig(base_width=4, depth=2, condition="defocus"))
    meta = model_metadata(net.config, Optics(), patch_size=96, training_data="t", training_command="c",
                          evaluation_summary="e", sample=Sample(), distribution=SectionDistribution())
    export_onnx(net, tmp_path / "m.onnx", meta)
    read = read_onnx_props(tmp_path / "m.onnx")
    assert read["condition"] == "defocus" and read["distribution.thickness_um"] == "0.5,5"
    assert read["distribution.thin_fraction"] == "0.25" and "single thin plane" in read["sample.distribution"]
    assert "sample.thickness_um" not in read  # no single section to claim


def test_conditioned_network_starts_as_its_unconditioned_source():
    torch.manual_seed(0)
    plain = build_network(NetworkConfig(base_width=4, depth=2))
    torch.nn.init.normal_(plain.decoder.head.weight, std=0.05)
    cond = build_network(NetworkConfig(base_width=4, depth=2, condition="defocus"))
    load_compatible_weights(cond, plain.state_dict())
    y1, y2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    plain.eval(), cond.eval()
    with torch.no_grad():
        same = plain(y1, y2)
        assert torch.allclose(cond(y1, y2, torch.tensor([[0.5], [3.0]])), same, atol=1e-6)
    with pytest.raises(ValueError, match="pass dd"):
        cond(y1, y2)


def test_exported_weights_import_exactly_for_fine_tuning(tmp_path):
    torch.manual_seed(1)
    net = build_network(NetworkConfig(base_width=4, depth=2))
    net.train()
    for _ in range(3):  # non-trivial batch-norm statistics
        net(torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16))
    torch.nn.init.normal_(net.decoder.head.weight, std=0.05)
    net.eval()
    export_onnx(net, tmp_path / "m.onnx", {"architecture": "tsva", "base_width": "4", "depth": "2"})
    back, config, _ = import_onnx_weights(tmp_path / "m.onnx")
    assert config == net.config
    y1, y2 = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    back.eval()
    with torch.no_grad():
        assert torch.allclose(back(y1, y2), net(y1, y2), atol=1e-5)


def test_the_distribution_is_read_back_from_the_model_metadata():
    """from_ranges inverts metadata(): what `tsva quantize` calibrates on is what the model trained on."""
    from tsva.common.metadata import ModelMetadata
    distribution = SectionDistribution(thin_fraction=0.3, thickness_um=(0.5, 4.0), read_noise=(0.001, 0.005))
    ranges = ModelMetadata.from_props(distribution.metadata()).section.distribution_ranges
    assert SectionDistribution.from_ranges(ranges) == distribution
